"""A training run's own directory: checkpoints, the best copy, a lock and a run record.

`RunDirectory` is the one place where both training systems (CleanNet's train.py and the
noisy-label model's stages) read, write and delete checkpoints. It guarantees:

- **ownership**: every checkpoint it restores or deletes lies inside the directory; a
  `checkpoint` state file that names a path elsewhere is refused (tf.train's checkpoint
  rotation would otherwise delete the files it names);
- **one run at a time**: an exclusive lock (`run.lock`, held with flock for the life of the
  run) makes a second run on the same directory refuse with one line naming the holder;
- **the same data and settings on resume**: `run.json` records the identity of the data
  files (size and a digest of their first and last MiB) and the settings that shape the
  model and the data; resuming with other ones refuses and says how to start afresh;
- **damaged checkpoints**: a latest checkpoint that cannot be read (truncated, corrupt)
  is reported and the newest one that loads is used instead;
- **no non-finite model on disk**: a save refuses weights holding NaN or infinity;
- **no leftovers**: `ckpt-N_temp` directories of a save that was killed are removed.

In a multi-worker run the chief owns the directory; the other workers write to a hidden
subdirectory (noisylabels.distribution.output_dir) and hold their own lock there.
"""

import json
import os
import shutil
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from noisylabels import distribution
from noisylabels.errors import DamagedCheckpointError, InputError, TrainingError
from noisylabels.fileio import atomic_open
from noisylabels.run_record import DirectoryLock, check_record
from noisylabels.state_files import read_json_state

BEST_SUBDIR = "best"
BEST_INFO_FILE = "best_model.json"
# What TensorFlow raises reading a truncated or corrupt checkpoint (a short read of the
# object graph is an IndexError).
DAMAGED_CHECKPOINT_ERRORS = (tf.errors.OpError, ValueError, IndexError, OSError)


def _inside(path: str, directory: str) -> bool:
    path = os.path.realpath(path)
    directory = os.path.realpath(directory)
    return os.path.commonpath([path, directory]) == directory


class RunDirectory:
    """Owns a run's checkpoint directory (see the module docstring).

    Args:
      directory: the directory the user named (created if missing).
      checkpoint: the tf.train.Checkpoint to save and restore.
      strategy: the tf.distribute strategy (None: one device).
      max_to_keep: recent checkpoints kept.
      checkpoint_name: prefix of the checkpoint files (`ckpt` -> ckpt-STEP.index).
      keep_best: also keep a copy of the best model in DIRECTORY/best.
    Use as a context manager: entering takes the lock, leaving releases it.
    """

    def __init__(self, directory: str, checkpoint: tf.train.Checkpoint, strategy=None, max_to_keep: int = 5,
                 checkpoint_name: str = "ckpt", keep_best: bool = False):
        strategy = strategy or tf.distribute.get_strategy()
        self.directory = distribution.output_dir(directory, strategy)
        self.chief = distribution.is_chief(strategy)
        self.checkpoint = checkpoint
        self._max_to_keep = max_to_keep
        self._checkpoint_name = checkpoint_name
        self._keep_best = keep_best
        self._lock = DirectoryLock(self.directory)
        self.manager = None
        self.best_manager = None

    # -- ownership -------------------------------------------------------------------

    def __enter__(self) -> "RunDirectory":
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as err:
            raise InputError("cannot create the run directory (%s)" % err.strerror, path=self.directory) from None
        self._lock.acquire()
        try:
            self._check_state_files()
            self._remove_interrupted_saves()
            self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, self._max_to_keep,
                                                      checkpoint_name=self._checkpoint_name)
            if self._keep_best:
                self.best_manager = tf.train.CheckpointManager(self.checkpoint, self.best_dir, max_to_keep=1,
                                                               checkpoint_name=self._checkpoint_name)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self._lock.release()
        return False

    @property
    def best_dir(self) -> str:
        return os.path.join(self.directory, BEST_SUBDIR)

    def _check_state_files(self) -> None:
        """Refuses `checkpoint` state files naming checkpoints outside their directory."""
        for directory in (self.directory, self.best_dir):
            state_path = os.path.join(directory, "checkpoint")
            if not os.path.exists(state_path):
                continue
            try:
                state = tf.train.get_checkpoint_state(directory)
            except (tf.errors.OpError, ValueError) as err:
                raise InputError("unreadable checkpoint state file (%s)" % str(err).splitlines()[0],
                                 path=state_path) from None
            if state is None:
                continue
            for path in [state.model_checkpoint_path, *state.all_model_checkpoint_paths]:
                full = path if os.path.isabs(path) else os.path.join(directory, path)
                if path and not _inside(full, directory):
                    raise InputError("names the checkpoint %r outside its directory; a run only reads and "
                                     "deletes checkpoints inside its own directory (remove the state file "
                                     "or use another directory)" % path, path=state_path)

    def _remove_interrupted_saves(self) -> None:
        """Deletes `PREFIX-N_temp` directories a killed save left (the checkpoints stay intact)."""
        for directory in (self.directory, self.best_dir):
            if os.path.isdir(directory):
                for name in os.listdir(directory):
                    if name.startswith(self._checkpoint_name + "-") and name.endswith("_temp"):
                        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)

    # -- run record ------------------------------------------------------------------

    def check_record(self, record: dict) -> None:
        """Refuses to resume a run made on other data or settings; records them otherwise."""
        check_record(self.directory, record, resuming=bool(self.manager.latest_checkpoint), write=self.chief)

    # -- checkpoints -------------------------------------------------------------------

    def restore_latest(self, restore: Callable[[str], None]) -> Optional[str]:
        """Restores the newest checkpoint that loads, newest first; returns its path or None.

        Args:
          restore: restores the checkpoint object from a path; raises tf.errors.OpError or
            ValueError when the files are damaged (InputError passes through: a checkpoint
            that does not fit the model is not a damaged one).
        """
        candidates = list(reversed(self.manager.checkpoints))
        for index, path in enumerate(candidates):
            try:
                restore(path)
            except DAMAGED_CHECKPOINT_ERRORS + (DamagedCheckpointError,) as err:
                logging.warning("Checkpoint %s is damaged (%s); trying the previous one.", path,
                                str(err).splitlines()[0] if str(err) else type(err).__name__)
                continue
            if index:
                logging.warning("Resumed from %s: the %d newer checkpoint(s) could not be read.", path, index)
            return path
        if candidates:
            raise InputError("no checkpoint here can be read (all %d are damaged); delete them to start afresh"
                             % len(candidates), path=self.directory)
        return None

    @property
    def latest(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def save(self, step: int) -> str:
        """Writes checkpoint PREFIX-step after checking every variable is finite."""
        self._check_finite(step)
        return self._write(self.manager, step)

    def save_best(self, step: int, info: dict) -> str:
        """Keeps a copy of the current weights in best/, with `info` in best/best_model.json."""
        self._check_finite(step)
        path = self._write(self.best_manager, step)
        if self.chief:
            with atomic_open(os.path.join(self.best_dir, BEST_INFO_FILE)) as f:
                json.dump(dict(info, step=int(step)), f)
        return path

    def _write(self, manager: tf.train.CheckpointManager, step: int) -> str:
        """manager.save, with a failed write (disk full, no permission) as one line naming the directory."""
        try:
            return manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as err:
            reason = err.message if isinstance(err, tf.errors.OpError) else (err.strerror or str(err))
            raise InputError("cannot write the checkpoint of step %d (%s); the last good checkpoint is %s"
                             % (step, str(reason).strip().splitlines()[0], self.latest or "none"),
                             path=manager.directory) from None

    def best_info(self) -> Optional[dict]:
        """best/best_model.json as a dict, or None when absent (InputError when damaged)."""
        path = os.path.join(self.best_dir, BEST_INFO_FILE)
        if not os.path.exists(path):
            return None
        return read_json_state(path, "delete it (and %s/ if its model is not needed): the best copy is then chosen "
                                     "again from the next evaluations" % self.best_dir)

    def _check_finite(self, step: int) -> None:
        for variable in self.checkpoint_variables():
            value = variable.numpy()
            if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
                raise TrainingError("the weight %s holds NaN or infinity at step %d; nothing was saved. The last "
                                    "good checkpoint is %s." % (variable.name, step, self.latest or "none"))

    def checkpoint_variables(self) -> list:
        """The float variables the checkpoint saves (model weights and optimizer slots)."""
        model = getattr(self.checkpoint, "model", None)
        variables = list(model.variables) if model is not None else []
        optimizer = getattr(self.checkpoint, "optimizer", None)
        if optimizer is not None:
            variables += [v for v in getattr(optimizer, "variables", []) if hasattr(v, "numpy")]
        return variables
