"""The project's one error type for bad input, and the CLI wrapper that prints it as one line.

Every tool raises `InputError` for anything the user can fix (a malformed TSV row, a
wrong-shaped `.npy`, a flag out of range). Command-line entry points wrap their `main`
with `cli_main`, so the user sees a single line on stderr and a non-zero exit status
instead of a Python traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class InputError(Exception):
    """Bad user input. `str()` is one line: "PATH:LINE: FIELD: MESSAGE" (known parts only).

    Args:
      message: what is wrong, in words a user can act on.
      path: the file the problem is in (or None for flags).
      line: 1-based line number in a text file (or None).
      field: the column, flag or array the problem is in (or None).
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        super().__init__(self._format())

    def _format(self):
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += ":%d" % self.line
            where += ": "
        elif self.line is not None:
            where = "line %d: " % self.line
        field = "%s: " % self.field if self.field else ""
        return (where + field + str(self.message)).replace("\n", " ")


class DamagedCheckpointError(InputError):
    """A checkpoint whose files cannot be read (truncated, corrupt); resume skips it."""


class TrainingError(Exception):
    """A run that cannot go on although its input was valid (e.g. the loss became NaN).

    The message says what happened, at which step, and what was saved.
    """


EXIT_INPUT_ERROR = 2
EXIT_TRAINING_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


def describe_os_error(err: OSError) -> str:
    """One line for an OSError: "PATH: REASON" (both paths of a failed rename)."""
    where = [str(p) for p in (err.filename, err.filename2) if p is not None]
    reason = err.strerror or str(err)
    return (" -> ".join(where) + ": " if where else "") + reason.replace("\n", " ")


def cli_main(main: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
    """Wraps an absl `main(argv)`: `InputError` becomes one stderr line and exit 2,
    `TrainingError` one stderr line and exit 1, an OSError that no tool turned into an
    `InputError` (a file it could not read or write) one line naming the path and exit 2,
    Ctrl-C one line and exit 130 (temporary files are removed as the stack unwinds)."""

    def wrapped(argv):
        try:
            return main(argv)
        except InputError as err:
            sys.stderr.write("error: %s\n" % err)
            sys.stderr.flush()
            sys.exit(EXIT_INPUT_ERROR)
        except OSError as err:
            sys.stderr.write("error: %s\n" % describe_os_error(err))
            sys.stderr.flush()
            sys.exit(EXIT_INPUT_ERROR)
        except KeyboardInterrupt:
            sys.stderr.write("error: interrupted\n")
            sys.stderr.flush()
            sys.exit(EXIT_INTERRUPTED)
        except TrainingError as err:
            sys.stderr.write("error: %s\n" % str(err).replace("\n", " "))
            sys.stderr.flush()
            sys.exit(EXIT_TRAINING_ERROR)

    wrapped.__name__ = getattr(main, "__name__", "main")
    wrapped.__doc__ = main.__doc__
    return wrapped


def check_flag(condition: bool, flag: str, message: str) -> None:
    """Raises InputError naming `--flag` unless `condition` holds."""
    if not condition:
        raise InputError(message, field="--%s" % flag)
