"""Workflow definitions, runs and step runs.

Runs and steps are state machines (django-fsm-2, `protected=True`). A transition method
only changes fields in memory; the services in `runs.services` and `runs.engine` lock the
row, call the transition, save and append the audit event in one transaction.
"""

import uuid

from django.db import models
from django_fsm import FSMField, FSMModelMixin, transition


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(models.TextChoices):
    PENDING = "pending"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


RUN_TERMINAL = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}
STEP_DONE = {StepStatus.SUCCEEDED, StepStatus.SKIPPED}
STEP_ENDED = {StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.FAILED, StepStatus.CANCELLED}


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant):
        return self.filter(tenant=tenant)


class WorkflowDefinition(models.Model):
    """One immutable version of a workflow: its step graph, validated on load."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    steps = models.JSONField()
    # the run's output: JSON whose strings starting with `=` are expressions (DESIGN §11);
    # null: the outputs of the steps nothing comes after
    output = models.JSONField(null=True, blank=True)
    spec_hash = models.CharField(max_length=64)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name", "version"], name="uniq_def_version"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Run(FSMModelMixin, models.Model):
    """One execution of a pinned workflow definition version."""

    run_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # tenant: (tenant, status, -created_at) and (tenant, idempotency_key) cover it
    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+",
                               db_index=False)
    definition = models.ForeignKey(WorkflowDefinition, on_delete=models.PROTECT,
                                   related_name="runs")
    status = FSMField(default=RunStatus.PENDING, choices=RunStatus.choices, protected=True)
    status_reason = models.CharField(max_length=500, blank=True)
    # Paused by a gate rather than by an operator: only then does the last gate's approval
    # resume the run. A field, not a reading of status_reason (an operator's "gateway
    # down" is not a gate).
    paused_for_gate = models.BooleanField(default=False)
    current_step = models.CharField(max_length=200, blank=True)
    step_index = models.IntegerField(default=0)
    input = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=200)
    # the key id of the API client it was created through ("" for people and the system):
    # four-eyes per key (tenant setting four_eyes: actor_and_key)
    created_by_key = models.CharField(max_length=64, blank=True, default="")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    workflow_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # a child run (a `type: workflow` step, DESIGN §11): the run and step that started it
    parent_run = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="children")
    parent_step_id = models.CharField(max_length=200, blank=True, default="")

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "idempotency_key"],
                                    name="uniq_run_idempotency"),
        ]
        indexes = [  # status by an index of its own: no LIKE index, which a db_index brings
            models.Index(fields=["tenant", "status", "-created_at"]),
            models.Index(fields=["status"], name="run_status"),
        ]

    def __str__(self) -> str:
        return str(self.run_id)

    @property
    def workflow(self) -> str:
        return self.definition.name

    @property
    def stream_name(self) -> str:
        return f"run/{self.run_id}"

    @transition(field=status, source=RunStatus.PENDING, target=RunStatus.RUNNING)
    def start(self):
        pass

    @transition(field=status, source=RunStatus.RUNNING, target=RunStatus.PAUSED)
    def pause(self):
        pass

    @transition(field=status, source=RunStatus.PAUSED, target=RunStatus.RUNNING)
    def resume(self):
        pass

    @transition(field=status, source=RunStatus.RUNNING, target=RunStatus.COMPLETED)
    def complete(self):
        pass

    @transition(field=status, source=[RunStatus.RUNNING, RunStatus.PAUSED],
                target=RunStatus.FAILED)
    def fail(self):
        pass

    @transition(field=status, source=[RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED],
                target=RunStatus.CANCELLED)
    def cancel(self):
        pass


class StepRun(FSMModelMixin, models.Model):
    """One step of a run: its decision, execution and receipt."""

    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="steps",
                            db_index=False)  # (run, step_id) below covers it
    step_id = models.CharField(max_length=200)
    step_type = models.CharField(max_length=200)
    index = models.PositiveIntegerField()
    after = models.JSONField(default=list)
    config = models.JSONField(default=dict, blank=True)
    status = FSMField(default=StepStatus.PENDING, choices=StepStatus.choices, protected=True)
    attempt = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    input = models.JSONField(null=True, blank=True)
    input_hash = models.CharField(max_length=64, blank=True)
    output = models.JSONField(null=True, blank=True)
    output_hash = models.CharField(max_length=64, blank=True)
    error = models.JSONField(null=True, blank=True)
    decision = models.CharField(max_length=8, blank=True)
    policy_versions = models.JSONField(default=list, blank=True)
    receipt_seq = models.PositiveIntegerField(null=True, blank=True)
    prev_receipt_hash = models.CharField(max_length=64, blank=True)
    receipt_hash = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    redeliveries = models.PositiveIntegerField(default=0)
    deadline_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    # an instance of a map step (`<id>[i]`): its parent's step id and its item's position
    map_parent = models.CharField(max_length=200, blank=True, default="")
    map_index = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_id"], name="uniq_run_step"),
        ]
        indexes = [  # what the sweeper looks for: few rows each
            models.Index(fields=["lease_expires_at"], name="step_lease_running",
                         condition=models.Q(status="running")),
            models.Index(fields=["deadline_at"], name="step_deadline_running",
                         condition=models.Q(status="running")),
            models.Index(fields=["not_before"], name="step_retry_pending",
                         condition=models.Q(status="pending", not_before__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.step_id}"

    @transition(field=status, source=StepStatus.PENDING, target=StepStatus.WAITING)
    def wait(self):
        pass

    @transition(field=status, source=[StepStatus.PENDING, StepStatus.WAITING],
                target=StepStatus.RUNNING)
    def start(self):
        pass

    @transition(field=status, source=StepStatus.RUNNING, target=StepStatus.SUCCEEDED)
    def succeed(self):
        pass

    @transition(field=status, source=StepStatus.RUNNING, target=StepStatus.FAILED)
    def fail(self):
        pass

    @transition(field=status, source=[StepStatus.PENDING, StepStatus.WAITING],
                target=StepStatus.SKIPPED)
    def skip(self):
        pass

    @transition(field=status, source=[StepStatus.PENDING, StepStatus.WAITING],
                target=StepStatus.CANCELLED)
    def cancel(self):
        pass

    @transition(field=status, source=StepStatus.FAILED, target=StepStatus.PENDING)
    def retry(self):
        self.attempt += 1


class Schedule(models.Model):
    """A bundle's schedule (DESIGN §11): beat starts a run of `workflow` per cron slot.

    `enabled` is what the bundle says; `paused` is an operator's (admin), which reloading
    a bundle leaves alone. Beat starts runs of a schedule that is enabled and not paused.
    `last_slot` is the newest slot beat has dealt with (run or recorded as skipped);
    `next_slot` the first slot after it that is still to come (null when inactive)."""

    tenant = models.ForeignKey("fcore.Tenant", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=100)
    workflow = models.CharField(max_length=200)
    cron = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    input = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    paused = models.BooleanField(default=False)
    spec_hash = models.CharField(max_length=64)
    last_slot = models.DateTimeField(null=True, blank=True)
    next_slot = models.DateTimeField(null=True, blank=True)
    last_run = models.ForeignKey(Run, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="+")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="uniq_schedule_name"),
        ]
        indexes = [  # what beat looks for
            models.Index(fields=["next_slot"], name="schedule_due",
                         condition=models.Q(enabled=True, paused=False)),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def active(self) -> bool:
        return self.enabled and not self.paused


class StepLease(models.Model):
    """An executor's claim on a running external step (DESIGN §12): one live lease per
    step. The token is given to the executor once; only its SHA-256 is stored. A lease is
    for one attempt; it ends when the step is reported, or when it expires (then the step
    is claimable again, `runs.claims.leases_expire`)."""

    step = models.OneToOneField(StepRun, on_delete=models.CASCADE, related_name="lease")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_index=False)
    attempt = models.PositiveIntegerField()
    token_hash = models.CharField(max_length=64)
    holder = models.CharField(max_length=200)
    lease_s = models.PositiveIntegerField()  # what a heartbeat extends it by, unless told
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"lease of {self.step_id} until {self.expires_at}"
