"""Wake-ups for executors waiting in a claim (`POST /workflows/tasks/claim` with `wait_s`).

When an external step becomes claimable (it starts, or its lease expires) the change's
commit announces it on the tenant's wake-up stream `steps-ready/<tenant id>`
(`steps_ready_announce`); a waiting claim listens to it (`steps_ready_listener`) *before*
it looks for work, so nothing that commits in between is missed, and then sleeps until an
announcement or its deadline — the database is not polled. Both go through
`fcore.wakeups`: Redis pub/sub (`fc:stream:steps-ready/<tenant id>`) where
`FCORE_WAKEUP_URL` names a Redis, else its stamp files, which wake claims of every process.

A waiting claim still looks again every `RECHECK_S`: an announcement lost with a Redis
blip delays work, it never strands it.
"""

from fcore.wakeups import Listener, stream_moved

RECHECK_S = 5.0


def _stream(tenant_id: int) -> str:
    return f"steps-ready/{tenant_id}"


def steps_ready_announce(tenant_id: int) -> None:
    """Wake the claims waiting for this tenant's work once the current transaction
    commits (nobody if it rolls back). Never raises."""
    stream_moved(_stream(tenant_id), 0)


def steps_ready_listener(tenant_id: int) -> Listener:
    """The tenant's announcements from now on (a context manager); `wait(timeout)`
    returns at the next one or after `timeout` seconds."""
    return Listener(_stream(tenant_id))
