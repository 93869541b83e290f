"""The engine: every step is a decision, and a run moves in as few transactions as it can.

The one public API of the engine; callers outside this package import from here only.

- `lock`: `run_lock`, the transaction and row lock everything that changes a run holds,
  and what it writes when its block ends;
- `sql`: the few named statements the engine runs for every step;
- `advance`: run transitions, starting steps on policy decisions, recording results;
- `steps`, `decisions`: step transitions and policy decisions, each with its audit event;
  `resolve_step_input`, a step's input with its expressions evaluated (DESIGN §11);
- `maps`: `when` conditions and `map` steps with their instances;
- `dispatch`: Celery work sent after a commit; `worker`: executing an internal step and
  the chain of steps a worker takes itself; `lease`: leases of running steps;
- `sweeper`: re-driving what a lost task or a dead worker left behind.

Layers inside, top to bottom (`pyproject.toml`, import-linter): sweeper, worker > advance
> decisions, maps > steps > lock, dispatch, lease > sql.
"""

from .advance import (
    advance_locked,
    run_advance,
    run_cancel,
    run_end,
    run_fail,
    run_paused_for_gate,
    run_start,
    run_transition,
    step_conclude,
    step_record_result,
)
from .decisions import decision_context
from .dispatch import ADVANCE_TASK, EXECUTE_TASK, enqueue_advance, enqueue_execute
from .lease import lease_renew
from .lock import (
    definition_of,
    lock_statement,
    parse_gate_id,
    parse_run_id,
    process_caches_clear,
    run_definition,
    run_held_new,
    run_insert,
    run_lock,
    run_memo,
    runs_lock_free,
)
from .sql import parts_of_run, run_with_seq, steps_of_run
from .steps import resolve_step_input, retry_delay, steps_of
from .sweeper import INTERNAL_GRACE_S, Sweep, runs_sweep
from .worker import step_execute

__all__ = [
    "ADVANCE_TASK", "EXECUTE_TASK", "INTERNAL_GRACE_S", "Sweep", "advance_locked",
    "decision_context", "definition_of", "enqueue_advance", "enqueue_execute",
    "lease_renew", "lock_statement", "parse_gate_id", "parse_run_id", "process_caches_clear",
    "resolve_step_input", "retry_delay",
    "run_advance", "run_cancel", "run_definition", "run_end", "run_fail", "run_held_new",
    "run_insert", "run_lock", "run_memo", "runs_lock_free", "run_paused_for_gate", "run_start",
    "run_transition", "runs_sweep", "step_conclude", "step_execute", "step_record_result",
    "parts_of_run", "run_with_seq", "steps_of", "steps_of_run",
]
