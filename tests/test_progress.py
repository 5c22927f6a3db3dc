"""Tests for util/progress.py: log mode (non-TTY) and bar mode (TTY), with a fake clock."""

import io
import logging

from util.progress import Progress, format_duration


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def absl_messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "absl"]


def test_format_duration():
    assert format_duration(0) == "0:00:00"
    assert format_duration(59.6) == "0:01:00"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(None) == "?"
    assert format_duration(float("inf")) == "?"


def test_log_mode_reports_count_rate_and_eta(caplog):
    clock = FakeClock()
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(total=1000, unit="rows", desc="convert", log_every_s=10, stream=stream,
                      clock=clock) as progress:
            clock.now += 4
            progress.update(100)  # 4 s < 10 s: nothing logged yet
            assert absl_messages(caplog) == []
            clock.now += 6
            progress.update(150)  # 250 rows in 10 s = 25 rows/s; 750 left = 30 s
            clock.now += 5
            progress.update(10)  # 5 s since the last line: nothing
    messages = absl_messages(caplog)
    assert stream.getvalue() == ""  # nothing written on the stream in log mode
    assert len(messages) == 2, messages
    assert messages[0] == "convert: 250/1,000 rows (25.0%), 25 rows/s, elapsed 0:00:10, ETA 0:00:30"
    # Final line at exit: 260 rows in 15 s = 17.3 rows/s, 740 left -> 42.7 s -> 0:00:43.
    assert messages[1].startswith("convert: 260/1,000 rows (26.0%), 17.3 rows/s, elapsed 0:00:15, ETA 0:00:43")
    assert messages[1].endswith("(done)")


def test_log_mode_unknown_total_shows_count_and_rate(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(unit="images", log_every_s=0, stream=io.StringIO(), clock=clock) as progress:
            clock.now += 2
            progress.update(5000)
    messages = absl_messages(caplog)
    assert messages[0] == "5,000 images, 2,500 images/s, elapsed 0:00:02"
    assert "ETA" not in messages[-1]


def test_log_mode_says_stopped_on_exception(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="absl"):
        try:
            with Progress(total=10, stream=io.StringIO(), clock=clock) as progress:
                progress.update(3)
                raise KeyError("x")
        except KeyError:
            pass
    assert absl_messages(caplog)[-1].endswith("(stopped)")


def test_tty_mode_draws_a_carriage_return_bar(caplog):
    clock = FakeClock()
    stream = FakeTty()
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(total=40, unit="classes", desc="k-means", stream=stream, clock=clock) as progress:
            clock.now += 2
            progress.update(10)  # 5 classes/s, 30 left -> 6 s
            first = stream.getvalue()
            clock.now += 6
            progress.update(30)
    assert absl_messages(caplog) == []  # no log lines in TTY mode
    assert first == "\rk-means [#####...............]  25% 10/40 classes, 5 classes/s, ETA 0:00:06"
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("k-means [####################] 100% 40/40 classes, 5 classes/s, ETA 0:00:00")


def test_tty_mode_redraw_is_throttled():
    clock = FakeClock()
    stream = FakeTty()
    with Progress(total=None, stream=stream, redraw_s=1.0, clock=clock) as progress:
        for _ in range(10):
            clock.now += 0.05
            progress.update(1)  # 0.5 s in all: no redraw
        assert stream.getvalue() == ""
        clock.now += 1.0
        progress.update(1)
        assert stream.getvalue().count("\r") == 1
    assert stream.getvalue().count("\r") == 2


def test_initial_count_is_not_in_the_rate(caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="absl"):
        with Progress(total=100, unit="steps", log_every_s=0, stream=io.StringIO(), clock=clock,
                      initial=60) as progress:
            clock.now += 10
            progress.update(20, postfix="loss 0.5")  # 20 steps in 10 s; 20 left -> 10 s
    assert absl_messages(caplog)[0] == "80/100 steps (80.0%), 2 steps/s, elapsed 0:00:10, ETA 0:00:10, loss 0.5"
