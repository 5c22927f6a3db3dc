"""Ending a TensorFlow tool's process without the interpreter's teardown.

A process that has imported TensorFlow spends seconds in the interpreter's teardown after
its last line of output: modules are cleared and the native libraries' destructors run.
Measured here, a script that only imports tensorflow spent 3.4 s (about 1 s of CPU) between
its last line and its end on a loaded 2-core machine, and train.py 3-5 s, up to tens of
seconds when the machine is busy or short of memory (the destructors' code pages must be
read back in). Nothing the tool wrote depends on that teardown: its outputs are closed and
its logs flushed before it returns.

`skip_teardown_on_success(main)` wraps an absl main: when main returns normally, it runs the
atexit handlers (Python's logging shutdown among them), flushes stdout and stderr, and ends
the process at once with status 0. A main that raises (an error exit, SystemExit with a
status) ends the usual way, so nothing is skipped on an error path.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import NoReturn


def exit_skipping_teardown(status: int = 0) -> NoReturn:
    """Runs the atexit handlers, flushes stdout and stderr, and ends the process with `status`.

    Unlike sys.exit, the interpreter's teardown (clearing the modules, the native libraries'
    destructors) is skipped. Never returns.
    """
    atexit._run_exitfuncs()  # what a normal exit runs first (logging.shutdown, user handlers)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # closed or replaced streams
            pass
    os._exit(status)


def skip_teardown_on_success(main: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
    """Wraps an absl main(argv): when TensorFlow was loaded, a return of None or 0 ends the
    process with status 0 at once (see exit_skipping_teardown); another return value, an
    exception, or a run that never loaded TensorFlow (nothing to skip) goes back to absl's
    app.run unchanged, so signals and exit handlers behave as usual there."""

    def wrapped(argv: list[str]) -> object:
        status = main(argv)
        if status not in (None, 0) or "tensorflow" not in sys.modules:
            return status  # absl's app.run exits with it the usual way
        exit_skipping_teardown(0)

    return wrapped
