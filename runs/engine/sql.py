"""The engine's named SQL statements: the few it runs for every step, written out, and
the reads behind every answer about a run (`parts_of_run`).

Everything else in the engine goes through the ORM. These statements run for every step
of every run, where building a query costs more than running it, so each is written once
as SQL with its purpose, and executed through Django's public cursor API
(`connection.cursor()`): Django's wrappers, error translation and query logging apply.
On PostgreSQL, with `server_side_binding` on (settings), psycopg prepares each one on the
server after five uses.

`RunWrites` holds what one run lock changed, and `write` sends it (or those of several
locks held in one transaction, `lock.runs_lock_free`): on PostgreSQL in one psycopg
pipeline (one round trip), before the transaction commits.
"""

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from audit.services import Appended
from fcore.rows import Rows, instance_from_row
from gates.models import Gate, PolicyDecision
from runs.models import Run, StepRun

# The run, locked, with its audit stream's head row, also locked (in READ COMMITTED a
# locked row found changed is read again at its newest version, an unlocked joined one is
# not), and the stamp of its tenant's policies (`gates.policies.policies_stamp_sql`).
_LOCKED_COLUMNS = """
    SELECT r.run_id, r.tenant_id, r.definition_id, r.status, r.status_reason,
           r.paused_for_gate, r.current_step, r.step_index, r.input, r.output, r.metadata,
           r.created_by, r.created_by_key, r.idempotency_key, r.request_hash,
           r.workflow_hash, r.created_at, r.updated_at, r.started_at, r.ended_at,
           r.parent_run_id, r.parent_step_id,
           s.id AS stream_pk, s.head_seq AS stream_head_seq,
           s.head_hash AS stream_head_hash, {stamp} AS policies_stamp"""
LOCK_RUN = _LOCKED_COLUMNS + """
      FROM runs_run r INNER JOIN audit_auditstream s ON s.name = %s
     WHERE r.run_id = %s {tenant} {for_update}"""
# Up to a number of a tenant's runs among some ids, locked as LOCK_RUN locks one, in the
# order of the ids, passing over those another transaction holds (PostgreSQL; a run's
# stream is named by a prefix and its id, `audit.services.run_stream_name`).
LOCK_RUNS_FREE = _LOCKED_COLUMNS + """
      FROM runs_run r INNER JOIN audit_auditstream s ON s.name = %s || r.run_id::text
     WHERE r.run_id = ANY(%s) AND r.tenant_id = %s
     ORDER BY array_position(%s, r.run_id) LIMIT %s
       FOR UPDATE OF r, s SKIP LOCKED"""
# The Run fields LOCK_RUN selects, in its order (tests/runs/test_engine_sql.py holds them
# to the model), and those among them that hold JSON.
LOCK_RUN_FIELDS = ("run_id", "tenant_id", "definition_id", "status", "status_reason",
                   "paused_for_gate", "current_step", "step_index", "input", "output",
                   "metadata", "created_by", "created_by_key", "idempotency_key",
                   "request_hash", "workflow_hash", "created_at", "updated_at", "started_at",
                   "ended_at", "parent_run_id", "parent_step_id")
_LOCK_RUN_JSON = tuple(LOCK_RUN_FIELDS.index(name) for name in ("input", "output", "metadata"))

# A step's state after a transition: every column the engine changes (not `redeliveries`,
# which the sweeper counts without the run lock).
STEP_SAVE = """
    UPDATE runs_steprun
       SET status = %s, attempt = %s, started_at = %s, ended_at = %s, input = %s,
           input_hash = %s, output = %s, output_hash = %s, error = %s, decision = %s,
           policy_versions = %s, receipt_seq = %s, prev_receipt_hash = %s,
           receipt_hash = %s, lease_expires_at = %s, deadline_at = %s, not_before = %s
     WHERE id = %s"""

# The run's state after a transition or a move to another step.
RUN_SAVE = """
    UPDATE runs_run
       SET status = %s, status_reason = %s, paused_for_gate = %s, current_step = %s,
           step_index = %s, output = %s, workflow_hash = %s, started_at = %s, ended_at = %s,
           updated_at = %s
     WHERE run_id = %s"""

# One policy decision taken before a step's attempt.
DECISION_INSERT = """
    INSERT INTO gates_policydecision
           (tenant_id, step_run_id, attempt, decision, reason, policy_id, policy_version,
            tier, rules_triggered, policies, context, evaluated_at, evaluation_us)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""

# The events of the run's audit stream appended under one lock, one row each (`rows`).
EVENTS_INSERT = """
    INSERT INTO audit_auditevent
           (stream_id, tenant_id, seq, code, actor, at, occurred_at, data, prev_hash, hash)
    VALUES {rows}"""
EVENT_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"

# The run's stream head moved to its last event (the row is locked by LOCK_RUN).
HEAD_MOVE = """
    UPDATE audit_auditstream
       SET head_seq = %s, head_hash = %s, updated_at = %s, unsealed = %s
     WHERE id = %s"""


# The id of a tenant's definition of a workflow (at a version, or its newest), with the
# stamp of the tenant's policies (`gates.policies.policies_stamp_sql`).
DEFINITION_CURRENT = """
    SELECT d.id, {stamp} FROM runs_workflowdefinition d
     WHERE d.tenant_id = %s AND d.name = %s {version}
     ORDER BY d.version DESC LIMIT 1"""

# A run's steps, in definition order, a map step's instances after it in item order (they
# share its index and are inserted after it), every column in STEP_FIELDS order.
_STEP_COLUMNS = """
    SELECT id, run_id, step_id, step_type, "index", after, config, status, attempt,
           started_at, ended_at, input, input_hash, output, output_hash, error, decision,
           policy_versions, receipt_seq, prev_receipt_hash, receipt_hash, lease_expires_at,
           redeliveries, deadline_at, not_before, map_parent, map_index"""
STEPS_OF_RUN = _STEP_COLUMNS + """
      FROM runs_steprun WHERE run_id = %s
     ORDER BY "index", id
"""
# The steps of several runs (PostgreSQL), each run's in STEPS_OF_RUN order.
STEPS_OF_RUNS = _STEP_COLUMNS + """
      FROM runs_steprun WHERE run_id = ANY(%s)
     ORDER BY run_id, "index", id
"""

# A run's policy decisions and its gates, oldest first, every column (`parts_of_run`: what
# every answer about a run shows besides the run and its steps).
DECISIONS_OF_RUN = """
    SELECT {columns} FROM gates_policydecision d
     WHERE d.step_run_id IN (SELECT id FROM runs_steprun WHERE run_id = %s)
     ORDER BY d.evaluated_at, d.id"""
GATES_OF_RUN = """
    SELECT {columns} FROM gates_gate g WHERE g.run_id = %s ORDER BY g.created_at, g.id"""

# A new run, with its audit stream's head row and its steps (`insert_run`).
RUN_INSERT = """
    INSERT INTO runs_run
           (run_id, tenant_id, definition_id, status, status_reason, paused_for_gate,
            current_step, step_index, input, output, metadata, created_by, created_by_key,
            idempotency_key, request_hash, workflow_hash, created_at, updated_at, started_at,
            ended_at, parent_run_id, parent_step_id)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
            %s, %s)"""
STREAM_INSERT = """
    INSERT INTO audit_auditstream
           (tenant_id, name, head_seq, head_hash, created_at, updated_at, unsealed)
    VALUES (%s, %s, 0, %s, %s, %s, %s) RETURNING id"""
STEPS_INSERT = """
    INSERT INTO runs_steprun
           (run_id, step_id, step_type, "index", after, config, status, attempt, input_hash,
            output_hash, decision, policy_versions, prev_receipt_hash, receipt_hash,
            redeliveries, map_parent)
    VALUES {rows} RETURNING id"""
STEP_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
# What a new step holds besides its run, id, type, index, after and config: what
# STEPS_INSERT writes, and (with every other field None) what its instance is loaded with.
NEW_STEP = {"status": "pending", "attempt": 1, "input_hash": "", "output_hash": "",
            "decision": "", "policy_versions": [], "prev_receipt_hash": "", "receipt_hash": "",
            "redeliveries": 0, "map_parent": ""}
# Every StepRun field, in the order of STEPS_OF_RUN (tests/runs/test_engine_sql.py holds
# them to the model), and those that hold JSON.
STEP_FIELDS = ("id", "run_id", "step_id", "step_type", "index", "after", "config", "status",
               "attempt", "started_at", "ended_at", "input", "input_hash", "output",
               "output_hash", "error", "decision", "policy_versions", "receipt_seq",
               "prev_receipt_hash", "receipt_hash", "lease_expires_at", "redeliveries",
               "deadline_at", "not_before", "map_parent", "map_index")
_STEP_JSON = tuple(STEP_FIELDS.index(name) for name in (
    "after", "config", "input", "output", "error", "policy_versions"))


def _db():
    """This thread's connection, looked up once per call here: `django.db.connection` is a
    proxy that looks it up again at every attribute."""
    return connections[DEFAULT_DB_ALIAS]


class _Values:
    """Python values as the connection's database takes them (the backend's own
    adapters: JSON as Jsonb on PostgreSQL and text on SQLite, datetimes as text on
    SQLite, UUIDs as hex where there is no UUID type)."""

    def __init__(self, db):
        self.adapt_json = db.ops.adapt_json_value
        self.at = db.ops.adapt_datetimefield_value
        self.native_uuid = db.features.has_native_uuid_field

    def json(self, value):
        return None if value is None else self.adapt_json(value, None)

    def uuid(self, value):
        return value if self.native_uuid else value.hex

    def step(self, step: StepRun) -> list:
        at, json = self.at, self.json
        return [step.status, step.attempt, at(step.started_at), at(step.ended_at),
                json(step.input), step.input_hash, json(step.output), step.output_hash,
                json(step.error), step.decision, json(step.policy_versions),
                step.receipt_seq, step.prev_receipt_hash, step.receipt_hash,
                at(step.lease_expires_at), at(step.deadline_at), at(step.not_before),
                step.pk]

    def run(self, run: Run) -> list:
        at = self.at
        return [run.status, run.status_reason, run.paused_for_gate, run.current_step,
                run.step_index, self.json(run.output), run.workflow_hash, at(run.started_at),
                at(run.ended_at), at(run.updated_at), self.uuid(run.run_id)]

    def decision(self, d: dict) -> list:
        json = self.json
        return [d["tenant_id"], d["step_run_id"], d["attempt"], d["decision"], d["reason"],
                d["policy_id"], d["policy_version"], d["tier"], json(d["rules_triggered"]),
                json(d["policies"]), json(d["context"]), self.at(d["evaluated_at"]),
                d["evaluation_us"]]

    def event(self, e: Appended) -> list:
        return [e.stream_id, e.tenant_id, e.seq, e.code, e.actor, e.at,
                self.at(e.occurred_at), self.json(e.data), e.prev_hash, e.hash]


def _pipelined(db):
    """On PostgreSQL, a psycopg pipeline: the statements executed inside travel together
    (with the BEGIN, if the transaction has not started), and rows fetched inside are
    fetched at once. Elsewhere, nothing."""
    if db.vendor != "postgresql":
        return nullcontext()
    stack = ExitStack()
    stack.enter_context(db.wrap_database_errors)
    stack.enter_context(db.connection.pipeline())
    return stack


def definition_current(tenant_id: int, workflow: str, version: int | None,
                       stamp_sql: str) -> tuple | None:
    """DEFINITION_CURRENT: (definition id, policies stamp), or None."""
    sql = DEFINITION_CURRENT.format(stamp=stamp_sql,
                                    version="" if version is None else "AND d.version = %s")
    params = [tenant_id, workflow] + ([] if version is None else [version])
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def insert_run(values: dict, stream_name: str, steps: list[dict], head_hash: str) -> tuple:
    """Insert a run (`values`: every field of LOCK_RUN_FIELDS), its stream's head row and
    its steps (`steps`: step_id, step_type, index, after, config each), on PostgreSQL in
    one round trip with the BEGIN. Returns (run, stream pk, steps) as loaded instances."""
    db = _db()
    v = _Values(db)
    now = values["created_at"]
    run_params = [v.uuid(values["run_id"]), *[
        v.json(values[name]) if name in ("input", "output", "metadata")
        else v.at(values[name]) if name.endswith("_at")
        else v.uuid(values[name]) if name == "parent_run_id" and values[name] is not None
        else values[name]
        for name in LOCK_RUN_FIELDS[1:]]]
    new = NEW_STEP
    step_params = [p for s in steps for p in (
        v.uuid(values["run_id"]), s["step_id"], s["step_type"], s["index"],
        v.json(s["after"]), v.json(s["config"]), new["status"], new["attempt"],
        new["input_hash"], new["output_hash"], new["decision"], v.json(new["policy_versions"]),
        new["prev_receipt_hash"], new["receipt_hash"], new["redeliveries"],
        new["map_parent"])]
    with db.cursor() as run_cursor, db.cursor() as stream_cursor, db.cursor() as steps_cursor:
        with _pipelined(db):
            run_cursor.execute(RUN_INSERT, run_params)
            stream_cursor.execute(STREAM_INSERT, [values["tenant_id"], stream_name, head_hash,
                                                  v.at(now), v.at(now), True])
            if steps:
                steps_cursor.execute(STEPS_INSERT.format(rows=", ".join([STEP_ROW] * len(steps))),
                                     step_params)
        stream_pk = stream_cursor.fetchone()[0]
        step_ids = [row[0] for row in steps_cursor.fetchall()] if steps else []
    run = Run.from_db(db.alias, LOCK_RUN_FIELDS, [values[name] for name in LOCK_RUN_FIELDS])
    new_steps = []
    for step_pk, s in zip(step_ids, steps, strict=True):
        fields = {**NEW_STEP, "policy_versions": [],  # a list of its own for each step
                  "id": step_pk, "run_id": values["run_id"], **s}
        new_steps.append(StepRun.from_db(db.alias, STEP_FIELDS,
                                         [fields.get(name) for name in STEP_FIELDS]))
    return run, stream_pk, new_steps


def _lock_run_sql(db, stamp_sql: str, *, with_tenant: bool) -> str:
    features = db.features
    for_update = "FOR UPDATE OF r, s" if features.has_select_for_update_of else (
        "FOR UPDATE" if features.has_select_for_update else "")
    return LOCK_RUN.format(stamp=stamp_sql, for_update=for_update,
                           tenant="AND r.tenant_id = %s" if with_tenant else "")


_DECISIONS = Rows(PolicyDecision, DECISIONS_OF_RUN, alias="d")
_GATES = Rows(Gate, GATES_OF_RUN, alias="g")
# A run of a tenant with its audit stream's head seq, in one statement: what every
# `GET /workflows/runs/{id}` reads first (`run_with_seq`).
_RUN_WITH_SEQ = Rows(Run, """
    SELECT {columns},
           (SELECT s.head_seq FROM audit_auditstream s WHERE s.name = %s) AS audit_seq
      FROM runs_run r WHERE r.run_id = %s AND r.tenant_id = %s""",
                     alias="r", extra=("audit_seq",))


def run_with_seq(run_id, stream_name: str, tenant_id: int) -> Run | None:
    """The tenant's run with `audit_seq`, the head seq of its stream `stream_name` (None
    before its first event), or None."""
    return _RUN_WITH_SEQ.first([stream_name, _Values(_db()).uuid(run_id), tenant_id])


def parts_of_run(run_id, *, with_steps: bool) -> tuple[list | None, list, list]:
    """(its steps — STEPS_OF_RUN — when `with_steps`, else None; its decisions; its gates):
    on PostgreSQL in one round trip; on SQLite through the ORM's `raw()`."""
    db = _db()
    param = [_Values(db).uuid(run_id)]
    if db.vendor != "postgresql":
        return (steps_of_run(run_id) if with_steps else None,
                list(PolicyDecision.objects.raw(_DECISIONS.sql, param)),
                list(Gate.objects.raw(_GATES.sql, param)))
    with db.cursor() as steps, db.cursor() as decisions, db.cursor() as gates:
        with _pipelined(db):
            if with_steps:
                steps.execute(STEPS_OF_RUN, param)
            decisions.execute(_DECISIONS.sql, param)
            gates.execute(_GATES.sql, param)
            step_rows = steps.fetchall() if with_steps else None
            decision_rows, gate_rows = decisions.fetchall(), gates.fetchall()
    return (None if step_rows is None else [
                instance_from_row(db, StepRun, STEP_FIELDS, _STEP_JSON, row) for row in step_rows],
            _DECISIONS.loaded(db, decision_rows), _GATES.loaded(db, gate_rows))


def steps_of_run(run_id) -> list[StepRun]:
    """STEPS_OF_RUN: the run's steps, in definition order."""
    db = _db()
    params = [_Values(db).uuid(run_id)]
    if db.vendor != "postgresql":
        return list(StepRun.objects.raw(STEPS_OF_RUN, params))
    with db.cursor() as cursor:
        cursor.execute(STEPS_OF_RUN, params)
        return [instance_from_row(db, StepRun, STEP_FIELDS, _STEP_JSON, row)
                for row in cursor.fetchall()]


def run_locked(run_id, stream_name: str, tenant_id: int | None, stamp_sql: str, *,
               with_steps: bool) -> tuple:
    """LOCK_RUN: (the run or None, its steps or None). The run carries its stream head
    (`stream_pk`, `stream_head_seq`, `stream_head_hash`) and its policies' stamp
    (`policies_stamp`) as attributes; its steps come with it (STEPS_OF_RUN) when
    `with_steps`. On PostgreSQL in one round trip with the BEGIN; on SQLite the ORM's
    `raw()` converts the values."""
    db = _db()
    sql = _lock_run_sql(db, stamp_sql, with_tenant=tenant_id is not None)
    run_param = _Values(db).uuid(run_id)
    params = [stream_name, run_param] + ([tenant_id] if tenant_id is not None else [])
    if db.vendor != "postgresql":
        run = next(iter(Run.objects.raw(sql, params)), None)
        return run, (steps_of_run(run_id) if run is not None and with_steps else None)
    steps_cursor = db.cursor() if with_steps else None  # both sent before either is read
    with db.cursor() as cursor, steps_cursor or nullcontext(), _pipelined(db):
        cursor.execute(sql, params)
        if steps_cursor is not None:
            steps_cursor.execute(STEPS_OF_RUN, [run_param])
        row = cursor.fetchone()
        step_rows = steps_cursor.fetchall() if steps_cursor is not None else None
    if row is None:
        return None, None
    steps = None if step_rows is None else [
        instance_from_row(db, StepRun, STEP_FIELDS, _STEP_JSON, r) for r in step_rows]
    return _locked_run(db, row), steps


def _locked_run(db, row) -> Run:
    """A run from a row of `_LOCKED_COLUMNS`, its stream head and policies' stamp as
    attributes."""
    run = instance_from_row(db, Run, LOCK_RUN_FIELDS, _LOCK_RUN_JSON, row)
    run.stream_pk, run.stream_head_seq, run.stream_head_hash, run.policies_stamp = \
        row[len(LOCK_RUN_FIELDS):]
    return run


def runs_locked_free(run_ids: list, stream_prefix: str, tenant_id: int, stamp_sql: str,
                     limit: int) -> list[tuple] | None:
    """LOCK_RUNS_FREE, then the steps of the runs it locked (STEPS_OF_RUNS): a list of
    (run, its steps), in the order of `run_ids`. None where the database cannot pass over
    a locked row (SQLite: there a transaction holds the whole database)."""
    db = _db()
    if not db.features.has_select_for_update_skip_locked:
        return None
    with db.cursor() as cursor:
        cursor.execute(LOCK_RUNS_FREE.format(stamp=stamp_sql),
                       [stream_prefix, run_ids, tenant_id, run_ids, limit])
        runs = [_locked_run(db, row) for row in cursor.fetchall()]
        if not runs:
            return []
        cursor.execute(STEPS_OF_RUNS, [[run.run_id for run in runs]])
        steps: dict = {run.run_id: [] for run in runs}
        for row in cursor.fetchall():
            step = instance_from_row(db, StepRun, STEP_FIELDS, _STEP_JSON, row)
            steps[step.run_id].append(step)
    return [(run, steps[run.run_id]) for run in runs]


@dataclass
class RunWrites:
    """What one run lock changed, written when its work is done (`write`): each changed
    row once, with its final state."""

    run: Run | None = None
    steps: dict[int, StepRun] = field(default_factory=dict)
    decisions: list[dict] = field(default_factory=list)
    events: list[Appended] = field(default_factory=list)
    head: tuple | None = None  # (stream pk, head seq, head hash)
    statements: list[tuple] = field(default_factory=list)  # (sql, params): `lock_statement`


def write(*locks: RunWrites) -> None:
    """Send the writes of one or more run locks: one statement per changed row, but one
    for all of a run's events; on PostgreSQL in one round trip. Their errors (a unique
    violation, a check) surface here, inside the transaction."""
    db = _db()
    v = _Values(db)
    statements = []
    for writes in locks:
        statements += [(STEP_SAVE, v.step(s)) for s in writes.steps.values()]
        statements += [(DECISION_INSERT, v.decision(d)) for d in writes.decisions]
        if writes.events:
            statements.append((
                EVENTS_INSERT.format(rows=", ".join([EVENT_ROW] * len(writes.events))),
                [p for e in writes.events for p in v.event(e)]))
        if writes.head is not None:
            pk, seq, digest = writes.head
            statements.append((HEAD_MOVE, [seq, digest, v.at(timezone.now()), True, pk]))
        if writes.run is not None:
            statements.append((RUN_SAVE, v.run(writes.run)))
        statements += writes.statements
    if not statements:
        return
    with db.cursor() as cursor, _pipelined(db):
        for sql, params in statements:
            cursor.execute(sql, params)
