"""absl flag helpers shared by the command-line tools."""

from absl import flags


def define_log_dir(default, help_text):
    """Defines `--log_dir` as the TensorBoard directory, as the original scripts had it.

    absl's logging module already defines `--log_dir` (where absl would write log files,
    which these tools never do). Defining it again would raise DuplicateFlagError, so
    absl's definition is removed first and ours takes its place; absl's logging reads the
    value only when asked to log to files.
    """
    if "log_dir" in flags.FLAGS:
        delattr(flags.FLAGS, "log_dir")
    flags.DEFINE_string("log_dir", default, help_text)
