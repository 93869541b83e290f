"""Progress of long work (`audit_verify`, `policy_simulate`): what services report, and the
bar a command shows for it.

A service that takes `progress` calls `start(total)` once it knows how much there is, then
`advance(n)` as it goes; it never decides how progress is shown. Commands show it with
`tqdm` on stderr — when stderr is a terminal, or with `--progress` — so their stdout and
exit codes stay the same with or without a bar.
"""

import shutil
import sys
from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class ProgressBar:
    """A `Progress` drawn by tqdm on `stream` (the bar appears at `start`)."""

    def __init__(self, *, stream, desc: str, unit: str):
        self.stream, self.desc, self.unit, self.bar = stream, desc, unit, None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self.close()
        # a terminal that reports no size (0 × 0) would hide the bar: 80 × 24 then
        size = shutil.get_terminal_size((80, 24))
        self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=self.stream,
                        mininterval=0.5, ncols=size.columns, nrows=size.lines)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def add_progress_arguments(parser) -> None:
    """`--progress` / `--no-progress` (default: a bar only when stderr is a terminal)."""
    parser.add_argument("--progress", action="store_true", default=None,
                        help="show a progress bar on stderr (default: when stderr is a "
                             "terminal)")
    parser.add_argument("--no-progress", action="store_false", dest="progress",
                        help="never show a progress bar")


@contextmanager
def command_progress(options: dict, *, desc: str, unit: str):
    """The `Progress` for a management command's run (None: no bar), closed at the end.

    Draws on the command's raw stderr (`call_command(stderr=…)` or sys.stderr): Django's
    OutputWrapper would end every redraw with a newline."""
    stream = options.get("stderr") or sys.stderr
    wanted = options.get("progress")
    if wanted is None:
        isatty = getattr(stream, "isatty", None)
        wanted = bool(isatty and isatty())
    if not wanted:
        yield None
        return
    bar = ProgressBar(stream=stream, desc=desc, unit=unit)
    try:
        yield bar
    finally:
        bar.close()
