"""An executor process for the fault tests: `python -m tests.faults.executor`.

Runs `FCClient.work` against FC_URL with the key in FC_KID/FC_SECRET as sub FC_SUB; its
handler journals `<sub> start|end <run:step:attempt> <pid>` to FC_JOURNAL (one line each,
appended and flushed) and sleeps `input.hold_s` (default FC_HOLD_S) seconds before it
answers `{"by": sub}`. No Django: only the SDK."""

import os
import time

from fcore.interfaces.client import FCClient


def journal(line: str) -> None:
    with open(os.environ["FC_JOURNAL"], "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def main() -> None:
    sub = os.environ["FC_SUB"]
    hold = float(os.environ.get("FC_HOLD_S", "0"))

    def handler(task):
        journal(f"{sub} start {task.idempotency_key} {os.getpid()}")
        time.sleep(hold)
        journal(f"{sub} end {task.idempotency_key} {os.getpid()}")
        return {"by": sub}

    with FCClient(os.environ["FC_URL"], os.environ["FC_KID"], os.environ["FC_SECRET"],
                  os.environ["FC_TENANT"], sub) as fc:
        fc.work(handler, wait_s=1, lease_s=int(os.environ.get("FC_LEASE_S", "5")),
                workflows=[os.environ["FC_WORKFLOW"]])


if __name__ == "__main__":
    main()
