"""Tests for util/progress.py: log mode (non-TTY) and bar mode (TTY) of the Progbar-drawn progress."""

import io
import logging
import os
import subprocess
import sys

from util.progress import Progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def absl_messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "absl"]


def test_log_mode_reports_count_and_ends_once(caplog, capsys):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(total=1000, unit="rows", desc="convert", log_every_s=3600, stream=stream) as progress:
            progress.update(100)  # the first update is shown at once
            progress.update(150)  # within log_every_s: not shown
            progress.update(10)
    messages = absl_messages(caplog)
    assert stream.getvalue() == "" and capsys.readouterr().out == ""  # neither the stream nor stdout
    assert len(messages) == 2, messages
    assert messages[0].startswith("convert: 100/1000 "), messages
    assert messages[1].startswith("convert: 260/1000 ") and messages[1].endswith("(done)"), messages
    assert not any(c in "".join(messages) for c in "\x1b\b\r\n━")  # plain text in the log


def test_log_mode_every_update_with_values(caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(total=3, unit="epochs", desc="classifier", log_every_s=0, stream=io.StringIO()) as progress:
            for loss in (0.9, 0.5, 0.25):
                progress.update(1, values={"loss": loss})
    messages = absl_messages(caplog)
    assert [m.split()[1] for m in messages] == ["1/3", "2/3", "3/3", "3/3"], messages
    assert messages[1].endswith("loss: 0.5000")  # the value as given, not averaged with 0.9
    assert "loss: 0.2500" in messages[-1] and messages[-1].endswith("(done)")


def test_log_mode_unknown_total_shows_count(caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(unit="images", log_every_s=0, stream=io.StringIO()) as progress:
            progress.update(5000)
    messages = absl_messages(caplog)
    assert messages[0].startswith("5000/Unknown "), messages
    assert "images" in messages[0]


def test_log_mode_says_stopped_on_exception(caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        try:
            with Progress(total=10, stream=io.StringIO(), log_every_s=0) as progress:
                progress.update(3)
                raise KeyError("x")
        except KeyError:
            pass
    last = absl_messages(caplog)[-1]
    assert last.startswith("3/10 ") and last.endswith("(stopped)"), last


def test_tty_mode_draws_a_carriage_return_bar(caplog, capsys):
    stream = FakeTty()
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(total=40, unit="classes", desc="k-means", stream=stream, redraw_s=0) as progress:
            progress.update(10)
            first = stream.getvalue()
            progress.update(30)
    assert absl_messages(caplog) == [] and capsys.readouterr().out == ""  # only the stream
    assert first.startswith("k-means\n\r") and "10/40" in first and "\n" not in first[len("k-means\n"):]
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 2  # the name line and the finished bar
    last = text.rstrip("\n").split("\r")[-1]
    assert "40/40" in last and "classes" in last


def test_tty_mode_redraw_is_throttled():
    stream = FakeTty()
    with Progress(total=None, stream=stream, redraw_s=3600) as progress:
        progress.update(1)  # drawn (the first)
        for _ in range(10):
            progress.update(1)  # within redraw_s: not drawn
        assert stream.getvalue().count("\r") == 1
    assert stream.getvalue().count("\r") == 2  # and the final state


def test_importing_does_not_load_keras():
    code = "import sys, util.progress; assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
