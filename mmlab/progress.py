"""Progress for long work: a tqdm bar on a terminal, plain lines in a log.

tqdm redraws its bar with carriage returns, which turns a redirected log (``> train.log``, a
papermill cell, a Slurm job's output) into one unreadable line. `progress` gives a tqdm bar when
stderr is a terminal (or a notebook front end) and otherwise a `PlainProgress` that prints one
line per ``every`` seconds and one at the end. With ``delay`` a bar stays silent unless the work
takes that long: the phases that are quick for most methods and minutes for some (evaluation,
test-time choices, a stage's precomputed inputs) use `QUIET_SECONDS`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

QUIET_SECONDS = 10.0  # ``delay`` of the bars of phases that are usually quick


class PlainProgress:
    """The part of tqdm's interface mmlab uses, printed as plain lines to stderr."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 initial: int = 0, every: float = 10.0, delay: float = 0.0, **_: Any):
        self.iterable, self.desc, self.n, self.every, self.delay = iterable, desc, initial, every, delay
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.postfix, self._start, self._closed, self._printed = "", time.monotonic(), False, None
        self._last = self._start

    def __iter__(self) -> Iterator:
        for item in (self.iterable if self.iterable is not None else ()):
            yield item
            self.update()
        self.close()

    def set_postfix(self, values: dict | None = None, refresh: bool = True, **kw: Any) -> None:
        items = {**(values or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every and now - self._start >= self.delay:
            self._print()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            shown = self._printed is not None
            if (shown or time.monotonic() - self._start >= self.delay) and self._printed != (self.n, self.postfix):
                self._print()

    def _print(self) -> None:
        self._last, self._printed = time.monotonic(), (self.n, self.postfix)
        total = f"/{self.total}" if self.total is not None else ""
        print(f"{self.desc}: {self.n}{total}" + (f" ({self.postfix})" if self.postfix else ""), file=sys.stderr,
              flush=True)


def is_interactive() -> bool:
    """stderr is a terminal, or we run inside a Jupyter kernel (tqdm.auto draws a widget)."""
    if "ipykernel" in sys.modules and "papermill" not in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", disable: bool = False,
             initial: int = 0, leave: bool = True, delay: float = 0.0) -> Any:
    """A tqdm bar on a terminal, `PlainProgress` lines otherwise, nothing when ``disable``; with
    ``delay`` (seconds) nothing either unless the work runs that long."""
    if disable:
        return tqdm(iterable, total=total, desc=desc, initial=initial, disable=True)
    if is_interactive():
        return tqdm(iterable, total=total, desc=desc, initial=initial, leave=leave, delay=delay)
    return PlainProgress(iterable, total=total, desc=desc, initial=initial, delay=delay)
