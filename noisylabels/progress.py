"""Progress of long loops (count, rate, time left), drawn by tqdm.

    with Progress(total=len(classes), unit="classes", desc="k-means") as progress:
        for c in classes:
            ...
            progress.update(1)

When stderr is a terminal, tqdm's one-line bar is redrawn in place on stderr (at most every
`redraw_s` seconds):

    k-means:  45%|████▌     | 45/100 [00:14<00:17,  3.20classes/s]

Otherwise (CI, nohup, a pipe) a plain line is logged with `absl.logging.info` at most every
`log_every_s` seconds (the first after `log_every_s`), and once at the end:

    k-means: 45/100 classes (45%), 3.20 classes/s, elapsed 00:14, left 00:17
    k-means: 100/100 classes (100%), 3.21 classes/s, elapsed 00:31, left 00:00 (done)

With `total=None` (unknown) the count and the rate are shown, without share and time left.
stdout is never written to (tools print their results there).

Why tqdm and not keras.utils.Progbar: Progbar imports Keras and so TensorFlow (about 8 s
and 0.7 GB on a 2-core machine) into tools that otherwise never load it, such as
util/convert_data.py and the noise-model data preparation.
"""

import sys
from types import TracebackType
from typing import Mapping, TextIO

from absl import logging
from tqdm import tqdm

LOG_FORMAT = ("{desc}{n_fmt}/{total_fmt}{unit} ({percentage:.0f}%), {rate_fmt}, elapsed {elapsed}, "
              "left {remaining}{postfix}")
LOG_FORMAT_NO_TOTAL = "{desc}{n_fmt}{unit}, {rate_fmt}, elapsed {elapsed}{postfix}"


def _stream_is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _AbslLines:
    """A file-like target for tqdm: every status tqdm writes becomes one absl INFO line."""

    def write(self, text: str) -> None:
        line = text.strip("\r\n ")
        if line:
            logging.info("%s", line)

    def flush(self) -> None:
        pass


class Progress:
    """Reports the progress of a loop as a terminal bar or as periodic log lines.

    Args:
      total: the expected final count, or None when unknown (no share, no time left).
      unit: what is counted, for the messages ("rows", "images", "steps", ...).
      desc: a short label naming the loop.
      log_every_s: seconds between log lines in non-terminal mode (0: every update).
      stream: where the bar goes in terminal mode (default sys.stderr, looked up when created).
      tty: force terminal (True) or log (False) mode; None: stream.isatty().
      redraw_s: seconds between bar redraws in terminal mode.
      initial: the count already done before this run (a resumed job); it counts towards
        the total but not towards the rate.

    Use as a context manager (or call `start` and `close`); `update(n)` adds n to the
    count. On exit the final state is shown once: the completed bar and a newline, or a
    last log line ending "(done)", or "(stopped)" when the loop ended by an exception.
    """

    def __init__(self, total: int | None = None, unit: str = "rows", desc: str = "", log_every_s: float = 10,
                 stream: TextIO | None = None, tty: bool | None = None, redraw_s: float = 0.1,
                 initial: int = 0) -> None:
        if total is not None and total < 0:
            raise ValueError("total must be None or non-negative, got %r" % (total,))
        if log_every_s < 0:
            raise ValueError("log_every_s must be non-negative, got %r" % (log_every_s,))
        stream = sys.stderr if stream is None else stream
        self.tty = _stream_is_tty(stream) if tty is None else bool(tty)
        self._closed = False
        if self.tty:
            self._bar = tqdm(total=total, desc=desc or None, unit=unit, file=stream, mininterval=redraw_s,
                             miniters=1, initial=initial)
        else:
            # delay > 0: no line for the starting state; the first one after log_every_s.
            self._bar = tqdm(total=total, desc=desc + ": " if desc else None, unit=" " + unit, file=_AbslLines(),
                             mininterval=log_every_s, miniters=1, initial=initial, delay=max(log_every_s, 1e-9),
                             bar_format=LOG_FORMAT if total is not None else LOG_FORMAT_NO_TOTAL)

    @property
    def count(self) -> int:
        """The count so far (including `initial`)."""
        return self._bar.n

    def __enter__(self) -> "Progress":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self.close(stopped=exc_type is not None)
        return False

    def start(self) -> "Progress":
        """Nothing left to do (tqdm starts its clock when made); kept for `with`-less use."""
        return self

    def update(self, n: int = 1, values: Mapping[str, float] | None = None) -> None:
        """Adds `n` to the count and shows it if it is time to.

        Args:
          n: how many more units are done.
          values: optional numbers shown after the count (e.g. {"loss": 0.31}); they stay
            until replaced.
        """
        if values:
            self._bar.set_postfix({k: "%.4g" % v for k, v in values.items()}, refresh=False)
        self._bar.update(n)

    def close(self, stopped: bool = False) -> None:
        """Shows the final state once.

        Args:
          stopped: the loop ended by an exception; the log line says "stopped", not "done".
        """
        if self._closed:
            return
        self._closed = True
        if self.tty:
            self._bar.close()
            return
        logging.info("%s (%s)", str(self._bar).strip(), "stopped" if stopped else "done")
        self._bar.leave = False
        self._bar.close()
