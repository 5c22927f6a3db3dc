"""absl flag helpers shared by the command-line tools: shared flags, checks, one-line errors.

- `define_log_dir`: `--log_dir` as the TensorBoard directory, as the original scripts had it.
- `define_img_dim`, `define_num_ref`, `define_embed_norm`: the feature-layout flags every
  CleanNet tool shares, defined once with one help text.
- `define_finite_float`: a float flag whose value must be finite (absl accepts inf and nan)
  and within absl's bounds, plus an optional exclusive lower bound.
- `parse_flags`: absl's flag parser with every error (an unknown or mistyped flag, a value
  out of bounds, an integer beyond the int64 range, a failed validator, a --flagfile that
  cannot be opened, a stray positional argument) as one line on stderr and exit status 2.
- `run_tool`: `app.run` with that parser and noisylabels.errors.cli_main.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Sequence

from absl import app, flags

from noisylabels.errors import EXIT_INPUT_ERROR, cli_main
from noisylabels.process_exit import skip_teardown_on_success
from noisylabels.strict_numbers import INT64_MAX, INT64_MIN

EMBED_NORMS = ("log", "l2norm", "l2_norm", "no_norm")

# The flags the helpers below define belong to the tool that calls them (absl lists a
# tool's own flags first in --help).
flags.disclaim_key_flags()


def define_log_dir(default: str | None, help_text: str) -> None:
    """Defines `--log_dir` as the TensorBoard directory, as the original scripts had it.

    absl's logging module already defines `--log_dir` (where absl would write log files,
    which these tools never do). Defining it again would raise DuplicateFlagError, so
    absl's definition is removed first and ours takes its place; absl's logging reads the
    value only when asked to log to files.
    """
    if "log_dir" in flags.FLAGS:
        delattr(flags.FLAGS, "log_dir")
    flags.DEFINE_string("log_dir", default, help_text)


def define_img_dim(default: int | None = 2048, extra_help: str = "") -> None:
    """`--img_dim`: the feature dimension h (2048 for ResNet-50 pool5)."""
    flags.DEFINE_integer("img_dim", default, "Dimensionality of the image embedding (feature length)." + extra_help,
                         lower_bound=1)


def define_num_ref(default: int = 32) -> None:
    """`--num_ref`: reference feature vectors per class (rows of ref.npy per class)."""
    flags.DEFINE_integer("num_ref", default, "Number of reference image embeddings for a class", lower_bound=1)


def define_embed_norm(default: str = "log") -> None:
    """`--embed_norm`: the feature normalisation (l2_norm, the original's help text, = l2norm)."""
    flags.DEFINE_enum("embed_norm", default, list(EMBED_NORMS),
                      "log: log(x + 1) (needs non-negative features); l2norm: unit length; no_norm: "
                      "unchanged (l2_norm is accepted as l2norm).")


def define_finite_float(name: str, default: float | None, help_text: str, lower_bound: float | None = None,
                        upper_bound: float | None = None, above: float | None = None) -> None:
    """A float flag that must be finite, within [lower_bound, upper_bound] and > `above`."""
    flags.DEFINE_float(name, default, help_text, lower_bound=lower_bound, upper_bound=upper_bound)

    def check(value):
        return value is None or (math.isfinite(value) and (above is None or value > above))

    message = "must be a finite number" + ("" if above is None else " greater than %g" % above)
    flags.register_validator(name, check, message=message)


HELP_FLAGS = ("-?", "--help", "--helpshort", "--helpfull", "--helpxml")


def _flag_error(message: str) -> None:
    """Ends the process with `error: MESSAGE` on one stderr line and exit status 2."""
    sys.stderr.write("error: %s\n" % message.replace("\n", " "))
    sys.stderr.flush()
    sys.exit(EXIT_INPUT_ERROR)


def _flagfile_message(err: flags.CantOpenFlagFileError) -> str:
    """absl's `ERROR:: Unable to open flagfile: [Errno 2] No such file or directory: 'F'` as
    `F: --flagfile: cannot open (No such file or directory)`."""
    text = str(err)
    match = re.search(r"\[Errno \d+\] (.+?): '(.*)'$", text)
    if match:
        return "%s: --flagfile: cannot open (%s)" % (match.group(2), match.group(1))
    return "--flagfile: " + text.replace("ERROR:: ", "")


def integer_out_of_range(flag_values: flags.FlagValues) -> str | None:
    """The first integer flag whose value lies beyond the int64 range (absl takes any Python
    integer; NumPy and TensorFlow need int64), as a message; None when all fit."""
    for name in sorted(flag_values):
        flag = flag_values[name]
        if not isinstance(flag.parser, flags.IntegerParser) or flag.name != name:
            continue
        values = flag.value if isinstance(flag.value, list) else [flag.value]
        for value in values:
            if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                return "flag --%s=%d: beyond the range of a 64-bit integer" % (name, value)
    return None


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing with every flag error as one stderr line and exit status 2; help
    (`-h` too) ends with status 0 (absl ends it with 1). The tools take flags only: a
    positional argument is refused (absl would pass it on unread)."""
    argv = [argv[0]] + ["--help" if arg == "-h" else arg for arg in argv[1:]]
    try:
        remaining = flags.FLAGS(argv)
    except SystemExit as exit_request:
        if exit_request.code == 1 and any(arg.split("=")[0] in HELP_FLAGS for arg in argv[1:]):
            sys.exit(0)
        raise
    except flags.CantOpenFlagFileError as err:
        _flag_error(_flagfile_message(err))
    except flags.Error as err:
        _flag_error(str(err))
    if len(remaining) > 1:
        _flag_error("unexpected argument %r: this tool takes flags only (--name=value)" % remaining[1])
    problem = integer_out_of_range(flags.FLAGS)
    if problem:
        _flag_error(problem)
    return remaining


def _own_flags_first_in_help(main):
    """absl's --help lists the flags of the module named by sys.argv[0] first; for an
    installed console script that is the wrapper, so the tool module's flags are
    registered for it too."""
    module = main.__module__
    if module == "__main__":
        return
    entry = sys.modules.get("__main__")
    if entry is not None:
        entry.__doc__ = sys.modules[module].__doc__  # --help starts with the tool's own description
    for flag in flags.FLAGS.get_key_flags_for_module(module):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run_tool(main: Callable[[list[str]], object]) -> None:
    """Runs an absl `main(argv)` as a command-line tool: one-line flag and input errors,
    the tool's own flags first in --help, and no teardown stall after a successful run
    (noisylabels.process_exit)."""
    _own_flags_first_in_help(main)
    app.run(skip_teardown_on_success(cli_main(main)), flags_parser=parse_flags)
