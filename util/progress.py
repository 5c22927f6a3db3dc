"""Progress reporting for long loops: count, rate and time left.

    with Progress(total=len(classes), unit="classes", desc="k-means") as progress:
        for c in classes:
            ...
            progress.update(1)

When stderr is a terminal, a one-line bar is redrawn in place (carriage return, at most
every `redraw_s` seconds):

    k-means [#########...........] 45% 45/100 classes, 3.2 classes/s, ETA 0:00:17

Otherwise (CI, nohup, a pipe) a line is logged with `absl.logging.info` at most every
`log_every_s` seconds, and once at the end:

    k-means: 45/100 classes (45.0%), 3.2 classes/s, elapsed 0:00:14, ETA 0:00:17

With `total=None` (unknown) the count and the rate are shown without percentage and ETA.
Only the standard library and absl are used.
"""

import sys
import time

from absl import logging

BAR_WIDTH = 20


def format_duration(seconds):
    """Seconds as H:MM:SS (hours unbounded); '?' for an unknown (None, negative, inf) duration."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def format_count(value):
    """An integer count with thousands separators; other numbers with 3 significant digits."""
    if float(value).is_integer():
        return "{:,}".format(int(value))
    return "%.3g" % value


def _stream_is_tty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Reports the progress of a loop as a terminal bar or as periodic log lines.

    Args:
      total: the expected final count, or None when unknown (no percentage, no ETA).
      unit: what is counted, for the messages ("rows", "images", "steps", ...).
      desc: a short label put before the numbers.
      log_every_s: seconds between log lines in non-terminal mode (0: every update).
      stream: where the bar goes (default sys.stderr, looked up when created).
      tty: force terminal (True) or log (False) mode; None: stream.isatty().
      redraw_s: seconds between bar redraws in terminal mode.
      clock: a function returning seconds (default time.monotonic); for tests.
      initial: the count already done before this run (a resumed job); it counts towards
        the total but not towards the rate.

    Use as a context manager; `update(n)` adds n to the count. On exit the final state is
    shown (bar completed with a newline, or a last log line).
    """

    def __init__(self, total=None, unit="rows", desc="", log_every_s=10, stream=None, tty=None,
                 redraw_s=0.1, clock=time.monotonic, initial=0):
        if total is not None and total < 0:
            raise ValueError("total must be None or non-negative, got %r" % (total,))
        if log_every_s < 0:
            raise ValueError("log_every_s must be non-negative, got %r" % (log_every_s,))
        self.total = total
        self.unit = unit
        self.desc = desc
        self.log_every_s = log_every_s
        self.stream = sys.stderr if stream is None else stream
        self.tty = _stream_is_tty(self.stream) if tty is None else bool(tty)
        self.redraw_s = redraw_s
        self.clock = clock
        self.count = initial
        self.initial = initial
        self.postfix = ""
        self.start_time = None
        self._last_report = None
        self._bar_length = 0
        self._closed = False

    # -- public API ---------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(stopped=exc_type is not None)
        return False

    def start(self):
        """Starts the clock (done by `with`; call it yourself without a `with`)."""
        if self.start_time is None:
            self.start_time = self.clock()
            self._last_report = self.start_time
        return self

    def update(self, n=1, postfix=None):
        """Adds `n` to the count and reports if it is time to.

        Args:
          n: how many more units are done.
          postfix: an optional short text shown after the numbers (e.g. "loss 0.31"); it
            stays until replaced.
        """
        self.start()
        self.count += n
        if postfix is not None:
            self.postfix = str(postfix)
        now = self.clock()
        interval = self.redraw_s if self.tty else self.log_every_s
        finished = self.total is not None and self.count >= self.total
        if now - self._last_report >= interval or (finished and self.tty):
            self._report(now)

    def set_total(self, total):
        """Sets or changes the expected total (None: unknown)."""
        self.total = total

    def close(self, stopped=False):
        """Shows the final state once: the bar and a newline, or a last log line.

        Args:
          stopped: the loop ended by an exception; the log line says "stopped", not "done".
        """
        if self._closed:
            return
        self._closed = True
        self.start()
        self._report(self.clock(), final="stopped" if stopped else "done")

    # -- numbers ------------------------------------------------------------------------

    def elapsed(self, now=None):
        """Seconds since start."""
        if self.start_time is None:
            return 0.0
        return (self.clock() if now is None else now) - self.start_time

    def rate(self, now=None):
        """Units per second since start, not counting `initial` (0 before any time has passed)."""
        elapsed = self.elapsed(now)
        return (self.count - self.initial) / elapsed if elapsed > 0 else 0.0

    def eta(self, now=None):
        """Seconds left at the average rate so far; None when unknown."""
        if self.total is None:
            return None
        left = max(self.total - self.count, 0)
        if left == 0:
            return 0.0
        rate = self.rate(now)
        return left / rate if rate > 0 else None

    def message(self, now=None):
        """The log line: 'DESC: COUNT[/TOTAL UNIT (P%)], RATE UNIT/s, elapsed T[, ETA T]'."""
        now = self.clock() if now is None else now
        parts = [self._count_text()]
        parts.append("%s %s/s" % (format_count(round(self.rate(now), 1)), self.unit))
        parts.append("elapsed %s" % format_duration(self.elapsed(now)))
        if self.total is not None:
            parts.append("ETA %s" % format_duration(self.eta(now)))
        if self.postfix:
            parts.append(self.postfix)
        return (self.desc + ": " if self.desc else "") + ", ".join(parts)

    def bar(self, now=None):
        """The terminal line: 'DESC [####....] P% COUNT/TOTAL UNIT, RATE UNIT/s, ETA T'."""
        now = self.clock() if now is None else now
        head = self.desc + " " if self.desc else ""
        if self.total:
            fraction = min(self.count / self.total, 1.0)
            filled = int(fraction * BAR_WIDTH)
            head += "[%s%s] %3d%% " % ("#" * filled, "." * (BAR_WIDTH - filled), int(fraction * 100))
        parts = ["%s %s/s" % (format_count(round(self.rate(now), 1)), self.unit)]
        if self.total is not None:
            parts.append("ETA %s" % format_duration(self.eta(now)))
        else:
            parts.append("elapsed %s" % format_duration(self.elapsed(now)))
        if self.postfix:
            parts.append(self.postfix)
        return head + self._count_text(with_percent=False) + ", " + ", ".join(parts)

    # -- output -------------------------------------------------------------------------

    def _count_text(self, with_percent=True):
        if self.total is None:
            return "%s %s" % (format_count(self.count), self.unit)
        text = "%s/%s %s" % (format_count(self.count), format_count(self.total), self.unit)
        if with_percent and self.total > 0:
            text += " (%.1f%%)" % (100.0 * self.count / self.total)
        return text

    def _report(self, now, final=False):
        self._last_report = now
        if self.tty:
            line = self.bar(now)
            padding = " " * max(self._bar_length - len(line), 0)
            self._bar_length = len(line)
            self.stream.write("\r" + line + padding + ("\n" if final else ""))
            self.stream.flush()
        else:
            logging.info("%s%s", self.message(now), " (%s)" % final if final else "")
