"""Re-walking hash chains and checking them against the signed checkpoints.

Nothing stored is trusted: every event hash is recomputed from its fields, every link and
number checked, every stream head compared with its last event. Then the checkpoints
(`audit.verify_checkpoints`) are checked — chained, hashed, signed by a known key, roots
recomputed — and every head they hold must still be in the database with the same hash.
That is what exposes a rewrite by a database superuser who recomputed the chain after the
change, deleted or truncated a stream, or deleted a whole run.

Speed: the scan bypasses the ORM (raw cursor, keyset-paginated chunks over the
`(stream_id, seq)` index) and canonicalises with `audit.jcs` — orjson where that is proven
byte-identical to RFC 8785, `rfc8785` otherwise.

Progress (`fcore.progress`): the total is the sum of the stream heads in scope, and every
chunk of events checked advances it — from forked workers too, through a queue the parent
drains while it waits for them.
"""

import hashlib
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import orjson
from django.apps import apps
from django.db import connection, connections

from .facts import facts_verify
from .hashing import GENESIS_HASH
from .jcs import (
    CANONICAL_ERRORS,
    MAX_SAFE_INTEGER,
    canonical,
    fast_safe,
    loads_stored,
    restore_floats,
)
from .keys import public_keys as registered_keys
from .models import AuditStream
from .verify_checkpoints import checkpoint_expectations
from .verify_log_db import log_failures

# In a forked scan worker: where it reports the events it checked (None: nobody asked).
_worker_progress = None

CHUNK = 20000
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


@dataclass
class ChainReport:
    streams: int = 0
    events: int = 0
    checkpoints: int = 0
    seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        """`{ok, streams, events, failures}`, plus `checkpoints` and `keys` (the ids of the
        keys that signed them) once there are checkpoints in scope."""
        report = {"ok": self.ok, "streams": self.streams, "events": self.events,
                  "failures": self.failures}
        if self.checkpoints:
            report.update(checkpoints=self.checkpoints, keys=self.keys)
        return report


def _plain(text: str) -> bool:
    """True when JCS writes `text` as itself between quotes: no `"`, no backslash, no
    control or other non-printable character (those take the general path)."""
    return text.isprintable() and '"' not in text and "\\" not in text


def event_bytes(stream: str, seq: int, code: str, actor: str, at: str, data,
                stream_json: bytes | None = None) -> bytes:
    """JCS of the hashed body `{stream, seq, code, actor, at, data}`, byte-identical to
    `rfc8785.dumps`; `data` is the JSON text (or value) the database returned.

    Fast path: the keys are fixed and already in JCS order (actor, at, code, data, seq,
    stream), so the body is assembled around `orjson.dumps(data)` when the data is in the
    proven-safe subset (`audit.jcs`) and the short strings need no escaping.
    """
    try:
        value = orjson.loads(data) if isinstance(data, str) else data
    except orjson.JSONDecodeError:  # NaN, integers beyond 64 bits: the exact path
        value = loads_stored(data)
    if (fast_safe(value) and _plain(actor + at + code) and type(seq) is int
            and 0 <= seq <= MAX_SAFE_INTEGER):
        try:
            inner = orjson.dumps(value, option=_OPTIONS)
            if stream_json is None:
                stream_json = orjson.dumps(stream)
            return b"".join((
                f'{{"actor":"{actor}","at":"{at}","code":"{code}","data":'.encode(),
                inner, f',"seq":{seq},"stream":'.encode(), stream_json, b"}"))
        except (orjson.JSONEncodeError, UnicodeEncodeError):
            pass
    body = {"stream": stream, "seq": seq, "code": code, "actor": actor, "at": at,
            "data": restore_floats(value)}
    return canonical(body)


def _rows(tenant_ids, stream_id, id_range=(None, None)):
    """Every event in scope as (stream_id, seq, code, actor, at, data, prev_hash, hash),
    ordered by stream and seq, fetched in chunks; `id_range` is [low, high) of stream ids.
    `data` arrives as JSON text: Django loads jsonb as text on PostgreSQL (a `::text` cast
    would be twice as slow), SQLite stores text."""
    where, params = [], []
    for bound, op in zip(id_range, (">=", "<"), strict=True):
        if bound is not None:
            where.append(f"stream_id {op} %s")
            params.append(bound)
    if stream_id is not None:
        where.append("stream_id = %s")
        params.append(stream_id)
    elif tenant_ids is not None:
        where.append(f"tenant_id IN ({', '.join(['%s'] * len(tenant_ids))})")
        params.extend(tenant_ids)
    last = (-1, -1)
    with connection.cursor() as cursor:
        while True:
            clause = " AND ".join(where + ["(stream_id, seq) > (%s, %s)"])
            cursor.execute(
                "SELECT stream_id, seq, code, actor, at, data, prev_hash, hash "
                f"FROM audit_auditevent WHERE {clause} ORDER BY stream_id, seq LIMIT %s",
                [*params, *last, CHUNK])
            chunk = cursor.fetchall()
            if not chunk:
                return
            yield chunk
            last = (chunk[-1][0], chunk[-1][1])


def audit_verify(*, tenant_ids: list[int] | None = None, stream: str | None = None,
                 public_keys: dict[str, bytes] | None = None,
                 checkpoints: bool = True, workers: int = 1,
                 progress=None, kept_checkpoints: list[str] = (),
                 facts: bool = True) -> ChainReport:
    """Verify the chains in scope (all, some tenants, or one stream) and, unless
    `checkpoints=False`, the checkpoints of those tenants and every head they hold.

    `public_keys` ({key_id: raw}) pins the keys a checkpoint may be signed with; by default
    the registered keys and the configured one are trusted. `workers` > 1 splits the scan
    over forked processes by stream id (only outside a transaction, on a database other
    processes can see; otherwise the scan stays in this process). `progress`
    (`fcore.progress.Progress`) hears the events expected, then each chunk checked.
    `kept_checkpoints`: signed notes an auditor kept; the logs must still extend them
    (`audit.verify_log_db`).
    `facts` (default) also checks the rows the events record against them (`audit.facts`).
    """
    started = time.perf_counter()
    report = ChainReport()
    streams = AuditStream.objects.all()
    if tenant_ids is not None:
        streams = streams.filter(tenant_id__in=tenant_ids)
    if stream is not None:
        streams = streams.filter(name=stream)
    by_id = {row[0]: row for row in streams.values_list("id", "name", "head_seq", "head_hash",
                                                        "tenant_id")}
    if progress is not None:
        progress.start(sum(row[2] for row in by_id.values()))
    expected, missing_failures = {}, []
    if checkpoints:
        expected, integrity, missing_failures, report.checkpoints, report.keys = (
            checkpoint_expectations(tenant_ids=tenant_ids, stream=stream,
                                    streams={row[1]: row[0] for row in by_id.values()},
                                    public_keys=public_keys))
        report.failures.extend(integrity)
        report.failures.extend(_log_failures(tenant_ids, public_keys, kept_checkpoints))
    ranges = _ranges(by_id, workers) if stream is None and _can_fork(workers) else None
    if ranges:
        chain_failures, head_failures = _scan_parallel(report, ranges, by_id, expected,
                                                       tenant_ids, progress)
    else:
        chain_failures, head_failures = _scan(
            report, by_id, expected, tenant_ids,
            stream_id=next(iter(by_id)) if stream and by_id else None,
            only_stream=stream is not None,
            advance=progress.advance if progress is not None else None)
    report.failures[:0] = chain_failures
    report.failures.extend(missing_failures + head_failures)
    if facts:
        report.failures.extend(facts_verify(tenant_ids=tenant_ids, stream=stream))
    report.seconds = time.perf_counter() - started
    return report


def _log_failures(tenant_ids, public_keys, kept) -> list[dict]:
    tenants = apps.get_model("fcore", "Tenant").objects.order_by("id")
    if tenant_ids is not None:
        tenants = tenants.filter(id__in=tenant_ids)
    keys = public_keys if public_keys is not None else registered_keys()
    return log_failures(tenants=list(tenants.values_list("id", "slug")), keys=keys,
                        kept=list(kept))


MIN_EVENTS_PER_WORKER = 50_000


def _can_fork(workers: int) -> bool:
    in_memory = getattr(connection, "is_in_memory_db", lambda: False)()
    return workers > 1 and not connection.in_atomic_block and not in_memory


def _ranges(by_id: dict, workers: int) -> list[tuple] | None:
    """[low, high) stream-id ranges with about the same number of events each."""
    total = sum(row[2] for row in by_id.values())
    workers = min(workers, total // MIN_EVENTS_PER_WORKER)
    if workers < 2:
        return None
    cuts, running, share = [], 0, total / workers
    for sid in sorted(by_id):
        if running >= share * (len(cuts) + 1) and len(cuts) < workers - 1:
            cuts.append(sid)
        running += by_id[sid][2]
    bounds = [None, *cuts, None]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _worker_init(queue) -> None:
    global _worker_progress
    _worker_progress = queue


def _scan_part(by_id, expected, tenant_ids, id_range):
    """One worker's share (runs in a forked process with its own connection)."""
    report = ChainReport()
    advance = _worker_progress.put if _worker_progress is not None else None
    try:
        failures, head_failures = _scan(report, by_id, expected, tenant_ids, stream_id=None,
                                        only_stream=False, id_range=id_range,
                                        advance=advance)
    finally:
        connection.close()
    return report.events, report.streams, failures, head_failures


def _relay_progress(queue, futures, progress) -> None:
    """Pass the workers' chunk counts on to `progress` until every worker is done. A
    worker's put is complete before its result exists, so nothing is left behind."""
    pending = set(futures)
    while pending:
        _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        while not queue.empty():
            progress.advance(queue.get())
    while not queue.empty():
        progress.advance(queue.get())


def _scan_parallel(report, ranges, by_id, expected, tenant_ids, progress=None):
    def inside(sid, low, high):
        return (low is None or sid >= low) and (high is None or sid < high)

    connections.close_all()  # each forked worker opens its own connection
    context = multiprocessing.get_context("fork")
    queue = context.SimpleQueue() if progress is not None else None
    with ProcessPoolExecutor(max_workers=len(ranges), mp_context=context,
                             initializer=_worker_init, initargs=(queue,)) as pool:
        futures = [pool.submit(
            _scan_part, {s: r for s, r in by_id.items() if inside(s, lo, hi)},
            {s: e for s, e in expected.items() if inside(s, lo, hi)}, tenant_ids, (lo, hi))
            for lo, hi in ranges]
        if queue is not None:
            _relay_progress(queue, futures, progress)
        results = [future.result() for future in futures]
    failures, head_failures = [], []
    for events, streams, part_failures, part_heads in results:
        report.events += events
        report.streams += streams
        failures.extend(part_failures)
        head_failures.extend(part_heads)
    return failures, head_failures


def _scan(report, by_id, expected, tenant_ids, *, stream_id, only_stream,
          id_range=(None, None), advance=None):
    """Walk the events; `expected` ({stream_id: {seq: (hash, label)}}) is consumed;
    `advance(n)` hears each chunk of `n` events once it is checked."""
    failures, head_failures, leftovers = [], [], {}
    if (only_stream and stream_id is None) or tenant_ids == []:
        rows = iter(())
    else:
        rows = _rows(tenant_ids, stream_id, id_range)
    sha256, seen = hashlib.sha256, set()
    current, name, expected_prev, expected_seq, checks = None, "", GENESIS_HASH, 1, None
    name_json, count = None, 0

    def close():
        if checks:
            leftovers[current] = checks
        row = by_id.get(current)
        if row is None:
            return
        if row[2] != expected_seq - 1 or (row[2] and row[3] != expected_prev):
            failures.append({"stream": row[1], "seq": row[2],
                             "problem": "stream head does not match its last event"})

    for chunk in rows:
        for sid, seq, code, actor, at, data, prev_hash, stored in chunk:
            if sid != current:
                if current is not None:
                    close()
                current, expected_prev, expected_seq = sid, GENESIS_HASH, 1
                row = by_id.get(sid)
                report.streams += row is not None
                name = row[1] if row else f"(stream id {sid})"
                try:
                    name_json = orjson.dumps(name)  # JCS of a string: proven equal
                except orjson.JSONEncodeError:
                    name_json = None
                checks = expected.pop(sid, None)
                seen.add(sid)
            count += 1
            if seq != expected_seq:
                failures.append({"stream": name, "seq": seq,
                                 "problem": f"expected seq {expected_seq}"})
            if prev_hash != expected_prev:
                failures.append({"stream": name, "seq": seq, "problem": "prev_hash does not link"})
            try:
                blob = event_bytes(name, seq, code, actor, at, data, name_json)
            except CANONICAL_ERRORS as exc:
                failures.append({"stream": name, "seq": seq, "problem": "content cannot be "
                                 f"canonicalised ({type(exc).__name__}: {exc})"})
            else:
                if sha256(prev_hash.encode("ascii") + blob).hexdigest() != stored:
                    failures.append({"stream": name, "seq": seq,
                                     "problem": "hash does not match content"})
            if checks and seq in checks:
                signed_hash, label = checks.pop(seq)
                if signed_hash != stored:
                    head_failures.append({"stream": name, "seq": seq, "problem":
                                          f"differs from the head signed in {label}"})
            expected_prev, expected_seq = stored, seq + 1
        if advance is not None:
            advance(len(chunk))
    if current is not None:
        close()
    report.events += count
    for sid, row in by_id.items():
        if sid in seen:
            continue
        report.streams += 1  # a stream without events
        checks = expected.pop(sid, None)
        if checks:
            leftovers[sid] = checks
        if row[2]:
            failures.append({"stream": row[1], "seq": row[2],
                             "problem": "stream head does not match its last event"})
    leftovers.update(expected)
    for sid, pending in leftovers.items():
        stream_name = by_id[sid][1] if sid in by_id else f"(stream id {sid})"
        for seq, (_, label) in sorted(pending.items()):
            head_failures.append({"stream": stream_name, "seq": seq,
                                  "problem": f"missing: {label} holds this event"})
    return failures, head_failures


def audit_verify_stream(stream: AuditStream, report: ChainReport | None = None) -> ChainReport:
    """Recompute every hash of one stream (no checkpoint checks)."""
    result = audit_verify(stream=stream.name, checkpoints=False)
    if report is None:
        return result
    report.streams += result.streams
    report.events += result.events
    report.failures.extend(result.failures)
    return report


def audit_verify_streams(streams) -> ChainReport:
    """Verify the chains of the tenants of `streams` and their checkpoints."""
    return audit_verify(tenant_ids=sorted(set(streams.values_list("tenant_id", flat=True))))
