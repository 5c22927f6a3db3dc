"""Progress of long loops (count, time per unit, time left), drawn by Keras' Progbar.

    with Progress(total=len(classes), unit="classes", desc="k-means") as progress:
        for c in classes:
            ...
            progress.update(1)

When stderr is a terminal, Keras' one-line bar is redrawn in place on stderr (at most
every `redraw_s` seconds), after a line naming the loop:

    k-means
    45/100 ━━━━━━━━━━━━━━━━━━━━ 17s 310ms/classes

Otherwise (CI, nohup, a pipe) the same text, without colours, is logged with
`absl.logging.info` at most every `log_every_s` seconds, and once at the end:

    k-means: 45/100 17s 310ms/classes
    k-means: 100/100 31s 310ms/classes (done)

Before the end the seconds are the time left; at the end, the time taken. With
`total=None` (unknown) the count is shown as `N/Unknown` and the seconds are the time
taken so far. stdout is never written to (tools print their results there). Keras (and so
TensorFlow) is imported when the first Progress is made, not when this module is.
"""

import contextlib
import io
import re
import sys
from typing import Mapping

from absl import logging

# Keras' bar draws with ANSI colours and backspaces; log lines and pipes get plain text.
BAR_WIDTH = 20
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*m|[\b\r\n]")


def _stream_is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Reports the progress of a loop as a terminal bar or as periodic log lines.

    Args:
      total: the expected final count, or None when unknown (no time left shown).
      unit: what is counted, for the messages ("rows", "images", "steps", ...).
      desc: a short label naming the loop.
      log_every_s: seconds between log lines in non-terminal mode (0: every update).
      stream: where the bar goes in terminal mode (default sys.stderr, looked up when created).
      tty: force terminal (True) or log (False) mode; None: stream.isatty().
      redraw_s: seconds between bar redraws in terminal mode.

    Use as a context manager (or call `start` and `close`); `update(n)` adds n to the
    count. On exit the final state is shown once: the completed bar and a newline, or a
    last log line ending "(done)", or "(stopped)" when the loop ended by an exception.
    """

    def __init__(self, total: int | None = None, unit: str = "rows", desc: str = "", log_every_s: float = 10,
                 stream=None, tty: bool | None = None, redraw_s: float = 0.1):
        from keras.utils import Progbar

        if total is not None and total < 0:
            raise ValueError("total must be None or non-negative, got %r" % (total,))
        if log_every_s < 0:
            raise ValueError("log_every_s must be non-negative, got %r" % (log_every_s,))
        self.total = total
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.tty = _stream_is_tty(self.stream) if tty is None else bool(tty)
        self.count = 0
        self._values = []
        self._started = self._closed = False
        # stateless_metrics=(): every value is shown as given, not averaged over updates. In
        # log lines the bar itself (its colours lost) says nothing: width 0 leaves it out.
        self._bar = Progbar(total, width=BAR_WIDTH if self.tty else 0, verbose=1,
                            interval=redraw_s if self.tty else log_every_s, stateless_metrics=(), unit_name=unit)

    def __enter__(self) -> "Progress":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close(stopped=exc_type is not None)
        return False

    def start(self) -> "Progress":
        """Shows the loop's name above the bar in terminal mode (done by `with`)."""
        if not self._started:
            self._started = True
            if self.tty and self.desc:
                self.stream.write(self.desc + "\n")
                self.stream.flush()
        return self

    def update(self, n: int = 1, values: Mapping[str, float] | None = None) -> None:
        """Adds `n` to the count and shows it if it is time to.

        Args:
          n: how many more units are done.
          values: optional numbers shown after the count (e.g. {"loss": 0.31}); each stays
            until replaced.
        """
        self.start()
        self.count += n
        if values:
            self._values = list(values.items())
        self._draw(finalize=False)

    def close(self, stopped: bool = False) -> None:
        """Shows the final state once.

        Args:
          stopped: the loop ended by an exception; the log line says "stopped", not "done".
        """
        if self._closed:
            return
        self._closed = True
        self.start()
        self._draw(finalize=True, ending="stopped" if stopped else "done")

    def _draw(self, finalize: bool, ending: str = "") -> None:
        """Lets Progbar draw (it writes to stdout), then sends its text to the stream or the log."""
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            self._bar.update(self.count, self._values, finalize=finalize)
        text = captured.getvalue()
        if not text:
            return
        if self.tty:
            self.stream.write(text)
            self.stream.flush()
        else:
            line = _TERMINAL_CODES.sub("", text).strip()
            logging.info("%s%s%s", self.desc + ": " if self.desc else "", line, " (%s)" % ending if ending else "")
