"""Tests for util/progress.py: log mode (non-TTY) and bar mode (TTY) of the tqdm-drawn progress."""

import io
import logging
import os
import subprocess
import sys

from noisylabels.progress import Progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def absl_messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "absl"]


def test_log_mode_is_throttled_and_ends_once(caplog, capsys):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(total=1000, unit="rows", desc="convert", log_every_s=3600, stream=stream) as progress:
            progress.update(100)  # within log_every_s: not shown
            progress.update(150)
    messages = absl_messages(caplog)
    assert stream.getvalue() == "" and capsys.readouterr().out == ""  # neither the stream nor stdout
    assert len(messages) == 1, messages
    assert messages[0].startswith("convert: 250/1000 rows (25%), ") and messages[0].endswith(" (done)"), messages
    assert "elapsed 00:00" in messages[0] and "left " in messages[0]


def test_log_mode_every_update_with_values(caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(total=3, unit="epochs", desc="classifier", log_every_s=0, stream=io.StringIO()) as progress:
            for loss in (0.9, 0.5, 0.25):
                progress.update(1, values={"loss": loss})
    messages = absl_messages(caplog)
    assert [m.split()[1] for m in messages] == ["1/3", "2/3", "3/3", "3/3"], messages
    assert messages[1].endswith(", loss=0.5")  # the value as given
    assert messages[-1].endswith(", loss=0.25 (done)")
    assert not any(c in "".join(messages) for c in "\r\n\x1b#")  # plain text, no bar


def test_log_mode_unknown_total_shows_count_and_rate(caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(unit="images", log_every_s=0, stream=io.StringIO()) as progress:
            progress.update(5000)
    messages = absl_messages(caplog)
    assert messages[0].startswith("5000 images, ") and "images/s" in messages[0], messages
    assert "left" not in messages[-1] and "%" not in messages[-1]


def test_log_mode_says_stopped_on_exception(caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        try:
            with Progress(total=10, stream=io.StringIO(), log_every_s=0, initial=2) as progress:
                progress.update(3)  # a resumed job: 2 done before, 3 now
                raise KeyError("x")
        except KeyError:
            pass
    last = absl_messages(caplog)[-1]
    assert last.startswith("5/10 rows (50%)") and last.endswith("(stopped)"), last


def test_tty_mode_draws_a_carriage_return_bar(caplog, capsys):
    stream = FakeTty()
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(total=40, unit="classes", desc="k-means", stream=stream, redraw_s=0) as progress:
            progress.update(10)
            first = stream.getvalue()
            progress.update(30)
    assert absl_messages(caplog) == [] and capsys.readouterr().out == ""  # only the stream
    assert first.startswith("\rk-means:") and "10/40" in first and "\n" not in first
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1  # the finished bar, once
    last = text.rstrip("\n").split("\r")[-1]
    assert "100%" in last and "40/40" in last and "classes/s" in last


def test_tty_mode_redraw_is_throttled():
    stream = FakeTty()
    with Progress(total=None, stream=stream, redraw_s=3600) as progress:
        drawn = stream.getvalue().count("\r")  # the starting state
        for _ in range(10):
            progress.update(1)  # within redraw_s: not drawn
        assert stream.getvalue().count("\r") == drawn
    assert stream.getvalue().count("\r") == drawn + 1  # and the final state


def test_importing_and_using_does_not_load_tensorflow():
    code = ("import sys\nfrom noisylabels.progress import Progress\nwith Progress(total=2) as p:\n    p.update(2)\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
