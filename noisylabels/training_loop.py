"""The step loop both training systems run: train, log, validate every N steps, save, stop.

A *task* (`TrainingTask`, implemented by CleanNet's `cleannet.trainer.Trainer` and a
noisy-label stage's `noise_model.training.stage_task.StageTask`) says what one step, one
log line and one validation are; `TrainingLoop` says when they happen, in the same order for both:

    [validate at the start, when the task asks]
    while step < end_step:
        outputs = task.next_step()               # one update; step += 1
        stop if the loss is not finite            (nothing from that step is saved)
        task.after_step(step, outputs)            (per-step summaries)
        log when task.log_due(step)               (means over the steps since the last log)
        validate when step % validate_every == 0 or step == end_step
        save when step % save_every == 0 or step == end_step; keep the best copy
        on SIGTERM: save (if not saved at this step) and stop

Training metrics are `keras.metrics.Mean` trackers, one per scalar the step returns, reset
at each log line. Summary writers are made by `summary_writers` (chief only). The task's
`on_saved(step, path)` is called after each checkpoint is written, `on_best` after each new
best copy, `on_terminated` when SIGTERM stopped the run.
"""

import os
import re
from typing import Mapping, Optional, Protocol

import keras
import tensorflow as tf

from noisylabels import distribution
from noisylabels.errors import InputError, TrainingError
from noisylabels.run_directory import RunDirectory


def summary_writers(log_dir: str, names: tuple, chief: bool) -> dict:
    """TensorBoard writers LOG_DIR/NAME for the chief; no-op writers for other workers."""
    if not chief:
        return {name: tf.summary.create_noop_writer() for name in names}
    writers = {}
    for name in names:
        directory = os.path.join(log_dir, name) if name else log_dir
        try:
            writers[name] = tf.summary.create_file_writer(directory)
        except tf.errors.OpError as err:  # e.g. a file in the way, no permission
            raise InputError("cannot write TensorBoard logs here (%s)" % _first_line(err.message),
                             path=directory, field="--log_dir") from None
    return writers


def _first_line(text: str) -> str:
    """The readable part of a TensorFlow error message (no op or function names)."""
    text = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]( name:)?", "", str(text)).strip()
    return text.splitlines()[0].strip() if text else "unknown error"


class TrainingTask(Protocol):
    """What `TrainingLoop` calls on a task: the training-task contract, written down once.

    Implemented by `cleannet.trainer.Trainer` and `noise_model.training.stage_task.StageTask`.
    """

    @property
    def step(self) -> int:
        """Completed updates (the loop's step count)."""

    def next_step(self) -> Mapping[str, tf.Tensor]:
        """Runs one update (step + 1); returns scalar tensors with "loss" (and optionally "finite")."""

    def after_step(self, step: int, outputs: Mapping[str, tf.Tensor]) -> None:
        """Per-step work after a finite step (e.g. per-step summaries)."""

    def log_due(self, step: int) -> bool:
        """Whether a log line is due after `step`."""

    def log(self, step: int, means: Mapping[str, float], outputs: Mapping[str, tf.Tensor]) -> None:
        """Writes the log line: `means` are the step outputs' means since the last line."""

    def validate(self, step: int) -> Mapping[str, float]:
        """Validates (or tests) at `step`; returns the metrics (a name of them may be the loop's best_metric)."""

    def on_saved(self, step: int, path: str) -> None:
        """Called after the checkpoint of `step` was written at `path`."""

    def on_best(self, step: int, value: float, path: str) -> None:
        """Called after a new best copy (best_metric = `value`) was written at `path`."""

    def on_terminated(self, step: int, path: Optional[str]) -> None:
        """Called when SIGTERM stopped the run; `path` is the latest checkpoint."""


class MeanTrackers:
    """One keras.metrics.Mean per scalar a training step returns (except `finite`)."""

    def __init__(self):
        self._trackers = {}

    def update(self, outputs: Mapping[str, tf.Tensor]) -> None:
        for name, value in outputs.items():
            if name == "finite":
                continue
            if name not in self._trackers:
                self._trackers[name] = keras.metrics.Mean(name=name)
            self._trackers[name].update_state(value)

    def result(self) -> dict:
        return {name: float(tracker.result()) for name, tracker in self._trackers.items()}

    def reset(self) -> None:
        for tracker in self._trackers.values():
            tracker.reset_state()


def check_finite(outputs: Mapping[str, tf.Tensor], step: int, run_dir: RunDirectory,
                 step_name: str = "step") -> None:
    """Raises TrainingError when the step's loss (or its `finite` flag) is not finite.

    `step_name` is what the message calls a step ("step"; the noisy-label stages: "iteration").
    """
    loss = float(outputs["loss"])
    finite = bool(outputs["finite"]) if "finite" in outputs else bool(tf.math.is_finite(loss))
    if not finite:
        raise TrainingError("the loss became %s (non-finite loss or gradient) at %s %d; nothing from that %s "
                            "was saved; last good checkpoint: %s. Lower the learning rate or check the input "
                            "for extreme values." % (loss, step_name, step, step_name, run_dir.latest or "none"))


class TrainingLoop:
    """Runs a task from its current step to `end_step` (see the module docstring).

    Args:
      task: the TrainingTask (its step, one update, the log line, validation, the hooks).
      run_dir: the entered RunDirectory.
      end_step: train until this step.
      validate_every / save_every: intervals in steps (also done at end_step).
      best_metric: name of a validation metric whose maximum is kept in best/ (None: none).
      best_so_far: the best value reached before this process started.
      step_name: what error messages call a step ("step", or "iteration" for Caffe's solvers).
    """

    def __init__(self, task: TrainingTask, run_dir: RunDirectory, end_step: int, validate_every: int, save_every: int,
                 best_metric: Optional[str] = None, best_so_far: Optional[float] = None, step_name: str = "step"):
        self.task = task
        self.run_dir = run_dir
        self.end_step = end_step
        self.validate_every = validate_every
        self.save_every = save_every
        self.best_metric = best_metric
        self.best_value = best_so_far
        self.trackers = MeanTrackers()
        self.metrics = {}
        self.last_saved_step = None
        self.step_name = step_name

    def validate(self, step: int) -> dict:
        self.metrics = self.task.validate(step)
        return self.metrics

    def _save(self, step: int, validated: bool) -> None:
        path = self.run_dir.save(step)
        self.last_saved_step = step
        self.task.on_saved(step, path)
        if not (validated and self.best_metric):
            return
        value = self.metrics[self.best_metric]
        if self.best_value is None or value > self.best_value or self.run_dir.best_manager.latest_checkpoint is None:
            self.best_value = value if self.best_value is None else max(self.best_value, value)
            path = self.run_dir.save_best(step, {self.best_metric: value})
            self.task.on_best(step, value, path)

    def run(self) -> bool:
        """Trains to end_step. Returns True when finished, False when SIGTERM stopped it."""
        task = self.task
        step = task.step
        with distribution.TerminationFlag() as termination:
            while step < self.end_step:
                outputs = task.next_step()
                check_finite(outputs, step + 1, self.run_dir, self.step_name)
                step = task.step
                self.trackers.update(outputs)
                task.after_step(step, outputs)
                if task.log_due(step):
                    task.log(step, self.trackers.result(), outputs)
                    self.trackers.reset()
                at_end = step >= self.end_step
                validated = step % self.validate_every == 0 or at_end
                if validated:
                    self.validate(step)
                if step % self.save_every == 0 or at_end:
                    self._save(step, validated)
                if termination.requested and not at_end:
                    if self.last_saved_step != step:
                        self._save(step, validated=False)
                    task.on_terminated(step, self.run_dir.latest)
                    return False
        return True
