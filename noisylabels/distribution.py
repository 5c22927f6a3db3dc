"""tf.distribute set-up and run control shared by train.py and noise_model/train.py
(TensorFlow is imported only when a strategy is made: the flag tools use DISTRIBUTIONS first).

- `split_cpu`: a CPU-only machine split into logical devices, to mirror across them;
- `make_strategy`: the strategy for `--distribution=none|mirrored|multi_worker`
  (multi_worker reads TF_CONFIG as TensorFlow documents it);
- `is_chief` / `output_dir`: in a multi-worker run, worker 0 (or the chief) writes the real
  checkpoints and TensorBoard logs; the other workers write theirs to a hidden temporary
  directory, as TensorFlow's multi-worker guide does;
- `TerminationFlag`: SIGTERM becomes a flag the training loop checks, so a pre-empted run
  writes a checkpoint and exits cleanly.
"""

from __future__ import annotations

import os
import signal

from absl import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

DISTRIBUTIONS = ("none", "mirrored", "multi_worker")


def split_cpu(num_cpu_replicas: int) -> None:
    """Splits the CPU into logical devices (call before TensorFlow initialises its devices)."""
    import tensorflow as tf

    if num_cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_cpu_replicas)])


def make_strategy(distribution: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for --distribution (multi_worker reads TF_CONFIG)."""
    import tensorflow as tf

    if distribution == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        logging.info("Using MirroredStrategy with devices %s", tuple(devices))
        return tf.distribute.MirroredStrategy(devices=devices)
    if distribution == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        logging.info("Using MultiWorkerMirroredStrategy: task %s, %d replicas", _task(strategy),
                     strategy.num_replicas_in_sync)
        return strategy
    return tf.distribute.get_strategy()


def _task(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for a single-process run and for worker 0 (or the chief) of a cluster."""
    task_type, task_id = _task(strategy)
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0)


def output_dir(directory: str, strategy: tf.distribute.Strategy) -> str:
    """`directory` for the chief; `directory/.worker_TYPE_ID` for the other workers."""
    if is_chief(strategy):
        return directory
    task_type, task_id = _task(strategy)
    return os.path.join(directory, ".worker_%s_%s" % (task_type, task_id))


class TerminationFlag:
    """Context manager turning SIGTERM into `self.requested = True` for the loop to check."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> TerminationFlag:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __exit__(self, *exc: object) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False
