"""A quiet console: TensorFlow's start-up noise filtered, real errors kept.

On a machine without a GPU, importing TensorFlow and initialising its devices writes
lines that are not errors of the user's run: absl's "before absl::InitializeLog" notice,
oneDNN and CPU-feature-guard notes, a failed cuInit, XLA service and "Sharding callback"
notes. Most come from native code, so Python's logging cannot filter them: `quiet_startup`
sends file descriptor 2 to a temporary file while TensorFlow loads and finds its devices,
then writes back every line that is not such a notice (so real errors still show).
Set CLEANNET_VERBOSE_TF=1 to see everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

NOISE_PATTERNS = (
    r"All log messages before absl::InitializeLog\(\) is called",
    r"oneDNN custom operations are on",
    r"cpu_feature_guard\.cc",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: ",
    r"rebuild TensorFlow with the appropriate compiler flags",
    r"failed call to cuInit",
    r"Could not find cuda drivers",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning",
    r"Sharding callback",
    r"XLA service .* initialized for platform",
    r"StreamExecutor device \(\d+\)",
    r"disabling MLIR crash reproducer",
    r"Compiled cluster using XLA",
    r"Registering .* factory",
    r"gpu_device\.cc.*Cannot dlopen some GPU libraries",
)
_NOISE = re.compile("|".join(NOISE_PATTERNS))


def is_noise(line: str) -> bool:
    """True for a TensorFlow start-up notice that says nothing about the user's run."""
    return bool(_NOISE.search(line))


@contextlib.contextmanager
def quiet_startup() -> Iterator[None]:
    """Filters TensorFlow's native start-up notices from stderr while the block runs."""
    if os.environ.get("CLEANNET_VERBOSE_TF") == "1":
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(True)
                    if not is_noise(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def load_tensorflow() -> ModuleType:
    """Imports TensorFlow and initialises its devices quietly. Returns the module."""
    with quiet_startup():
        import tensorflow as tf

        tf.config.list_physical_devices()  # finds the devices (cuInit) without initialising them, so
        # logical CPU devices can still be configured afterwards (noisylabels.distribution.split_cpu)
    # TensorFlow's own Python INFO lines (e.g. "Sharding callback duration" at every checkpoint
    # save, logged through absl) say nothing about the run; its warnings and errors still show.
    tf.get_logger().setLevel("WARNING")
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _TensorFlowInfoFilter) for f in absl_logger.filters):
        absl_logger.addFilter(_TensorFlowInfoFilter())
    return tf


class _TensorFlowInfoFilter(logging.Filter):
    """Drops INFO (and lower) records logged from inside the TensorFlow package."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or _TENSORFLOW_DIR not in record.pathname


_TENSORFLOW_DIR = os.sep + "tensorflow" + os.sep
