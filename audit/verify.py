"""Re-walking hash chains. Pure recomputation from stored rows; nothing is trusted."""

from dataclasses import dataclass, field

from .hashing import GENESIS_HASH, event_hash
from .models import AuditEvent, AuditStream


@dataclass
class ChainReport:
    streams: int = 0
    events: int = 0
    failures: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {"ok": self.ok, "streams": self.streams, "events": self.events,
                "failures": self.failures}


_FIELDS = ("seq", "code", "actor", "at", "data", "prev_hash", "hash")


def audit_verify_stream(stream: AuditStream, report: ChainReport | None = None) -> ChainReport:
    """Recompute every hash of one stream and check links, numbering and the head."""
    report = report or ChainReport()
    report.streams += 1
    expected_prev, expected_seq = GENESIS_HASH, 1
    rows = AuditEvent.objects.filter(stream=stream).order_by("seq").values_list(*_FIELDS)
    for seq, code, actor, at, data, prev_hash, stored_hash in rows.iterator(chunk_size=2000):
        report.events += 1
        where = {"stream": stream.name, "seq": seq}
        if seq != expected_seq:
            report.failures.append({**where, "problem": f"expected seq {expected_seq}"})
        if prev_hash != expected_prev:
            report.failures.append({**where, "problem": "prev_hash does not link"})
        recomputed = event_hash(prev_hash=prev_hash, stream=stream.name, seq=seq, code=code,
                                actor=actor, at=at, data=data)
        if recomputed != stored_hash:
            report.failures.append({**where, "problem": "hash does not match content"})
        expected_prev, expected_seq = stored_hash, seq + 1
    head_moved = stream.head_seq and stream.head_hash != expected_prev
    if stream.head_seq != expected_seq - 1 or head_moved:
        report.failures.append({"stream": stream.name, "seq": stream.head_seq,
                                "problem": "stream head does not match its last event"})
    return report


def audit_verify_streams(streams) -> ChainReport:
    """Verify every given stream; returns one report."""
    report = ChainReport()
    for stream in streams.order_by("name").iterator():
        audit_verify_stream(stream, report)
    return report
