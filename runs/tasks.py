"""Celery tasks: thin interfaces that take ids and call one service. Safe to deliver twice."""

from celery import shared_task

from . import beat, claims, engine, services


@shared_task(name=engine.ADVANCE_TASK)
def advance_run(run_id: str) -> None:
    engine.run_advance(run_id)


@shared_task(name=engine.EXECUTE_TASK)
def execute_step(run_id: str, step_id: str, attempt: int, step_type: str | None = None) -> None:
    engine.step_execute(run_id, step_id, attempt, step_type)


@shared_task(name="runs.tasks.expire_due_gates")
def expire_due_gates() -> int:
    return services.gates_expire_due()


@shared_task(name="runs.tasks.sweep_runs")
def sweep_runs() -> dict:
    return {**engine.runs_sweep().as_dict(), "leases_expired": claims.leases_expire()}


@shared_task(name="runs.tasks.start_due_schedules")
def start_due_schedules() -> dict:
    return beat.schedules_start_due().as_dict()
