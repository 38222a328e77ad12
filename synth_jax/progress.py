"""A terminal progress line for long work: count, rate, ETA. On a TTY the line is redrawn in
place; elsewhere (logs of batch jobs) a line is written every `every_s` seconds, the first after
`every_s`, so that work that ends (or fails) sooner leaves no progress lines before its result.

A line left open on a TTY (work that stopped with an error) is erased by `clear_open_line()`
before the error is printed, so that the error is the only thing on the screen's last line.
"""

from __future__ import annotations

import sys
import time

_open: set[Progress] = set()  # progress lines drawn on a TTY and not yet ended


class Progress:
    def __init__(
        self,
        total: int,
        label: str,
        unit: str = "it",
        every_s: float = 10.0,
        stream=None,
        start: int = 0,
    ):
        self.total = int(total)
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every_s = 0.2 if self.tty else every_s
        self.start_count = self.count = int(start)
        self.t0 = time.perf_counter()
        self.last = -1e9 if self.tty else self.t0
        self.extra = ""

    def update(self, count: int, extra: str = ""):
        self.count = int(count)
        self.extra = extra
        now = time.perf_counter()
        if now - self.last >= self.every_s or (self.tty and self.count >= self.total):
            self.last = now
            self._draw(now)

    def _draw(self, now: float):
        elapsed = max(now - self.t0, 1e-9)
        done = self.count - self.start_count
        rate = done / elapsed
        left = (self.total - self.count) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.count / max(self.total, 1)
        eta = _fmt_time(left) if left == left else "?"
        line = (
            f"{self.label}: {self.count}/{self.total} ({pct:4.1f}%) "
            f"{rate:,.1f} {self.unit}/s ETA {eta}"
        )
        if self.extra:
            line += " " + self.extra
        if self.tty:
            self.stream.write("\r\033[K" + line)
            _open.add(self)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        """The final line (the work is done)."""
        self._draw(time.perf_counter())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
            _open.discard(self)

    def abandon(self):
        """Erases the line if it is still open (the work stopped early); no-op after close()."""
        if self in _open:
            self.stream.write("\r\033[K")
            self.stream.flush()
            _open.discard(self)


def clear_open_line() -> None:
    """Erases every progress line still open on a TTY (before an error message is printed)."""
    for progress in list(_open):
        progress.abandon()


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
