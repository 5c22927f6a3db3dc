"""One noisy-label training stage as a task of the shared training loop (noisylabels.training_loop).

`StageTask` holds the stage's model, its Caffe solver (solver.CaffeSGD), the iteration
count and the compiled training step, and tells `TrainingLoop` what one iteration, one
display and one test are. The loop then runs Caffe's order of events:

- test at the start (iteration 0, or where joint_stage2 takes over joint's state) and
  after every iteration that is a multiple of test_interval, and at max_iter;
- display the means over the iterations since the last display after iteration i (0-based,
  as Caffe's log counts) when i is a multiple of `display`, and after the last iteration;
- snapshot every snapshot_interval iterations and at max_iter; on SIGTERM, snapshot the
  current iteration and stop.

Distribution: the batch size is global; each replica trains on its contiguous slice of
the batch, and its loss is its share of the global batch's loss (Σ over its slice / the
global batch M), so the replicas' gradients, summed by the Keras optimizer, are the
single-device gradient of the Caffe losses divided by M.
"""

import dataclasses
import time
from typing import Dict, Optional

import keras
import tensorflow as tf
from absl import logging

from noise_model.data import datasets
from noise_model.training import evaluation
from noise_model.model import layers
from noise_model.model import models
from noise_model.training import objectives
from noise_model.protocol import STAGE_NET, TRAIN_SPLIT
from noise_model.training.settings import SolverSettings
from noise_model.training.solver import CaffeSGD
from noisylabels import distribution
from noisylabels.errors import InputError, check_flag
from noisylabels.training_loop import TrainingTask


@dataclasses.dataclass
class StageConfig:
    """Everything one stage's run needs (flags resolved)."""
    dataset: str
    stage: str
    data_dir: str
    train_dir: str
    settings: SolverSettings
    seed: int = 0
    clean_model_dir: Optional[str] = None
    ntype_model_dir: Optional[str] = None
    init_dir: Optional[str] = None
    caffemodel_weights: Optional[str] = None


def make_solver(settings: SolverSettings) -> CaffeSGD:
    """The stage's CaffeSGD (create it inside the strategy's scope)."""
    return CaffeSGD(base_lr=settings.base_lr, momentum=settings.momentum, weight_decay=settings.weight_decay,
                    gamma=settings.gamma, stepsize=settings.stepsize, bias_lr_mult=settings.bias_lr_mult,
                    bias_decay_mult=settings.bias_decay_mult)


class StageTask(TrainingTask):
    """A stage's model, solver and compiled steps, plus what TrainingLoop asks of a task.

    Args:
      config: the stage's resolved settings and directories.
      num_classes, image_size: of the prepared data (metadata.json).
      strategy: the tf.distribute strategy (None: one device).
    The checkpoint holds `model`, `global_step` (the Caffe iteration count) and
    `optimizer` (its own iteration count and one momentum slot per variable).
    """

    def __init__(self, config: StageConfig, num_classes: int, image_size: int, strategy=None):
        self.config = config
        self.settings = config.settings
        self.num_classes = num_classes
        self.kind = STAGE_NET[config.stage]
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        check_flag(self.settings.batch_size % self.replicas == 0, "batch_size",
                   "%d is not divisible by the %d replicas (the batch size is global)"
                   % (self.settings.batch_size, self.replicas))
        with self.strategy.scope():
            keras.utils.set_random_seed(config.seed)
            self.model = models.build_stage_net(config.dataset, self.kind, num_classes, image_size)
            self.optimizer = make_solver(self.settings)
            self.optimizer.build(self.model.trainable_variables)
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.checkpoint = tf.train.Checkpoint(model=self.model, global_step=self.global_step,
                                              optimizer=self.optimizer)
        self.matrix_c = None
        self.noisy_label_loss = None
        if self.kind == "joint":
            self.matrix_c = datasets.load_matrix_c(config.data_dir, num_classes)
            self.noisy_label_loss = layers.NoisyLabelLoss(self.matrix_c,
                                                          update_noise_lr=self.settings.update_noise_lr)
        self.tests = self._make_tests(image_size)
        self.train_step = tf.function(self._train_step, reduce_retracing=True)
        self._batches = None
        self._writer = None
        self._window_start = None  # start of the display window (seconds), tests excluded
        self._last_log_step = 0

    # -- the compiled steps ---------------------------------------------------------------

    def _make_tests(self, image_size: int) -> list:
        c = self.config
        if self.kind == "joint":
            eval_net, ntype_net = self.model.clean_net, self.model.ntype_net
        else:
            eval_net, ntype_net = self.model, (self.model if self.kind == "ntype" else None)
        tests = []
        for prefix, split, column in objectives.test_splits(c.dataset, c.stage):
            data = datasets.make_dataset(c.dataset, c.data_dir, split, self.settings.test_batch_size, training=False)
            tests.append(evaluation.SplitTest(prefix, split, column, data,
                                              evaluation.make_eval_step(eval_net, column, image_size, ntype_net)))
        return tests

    def _forward(self, images, training: bool):
        """(clean logits [B, L] or None, noise-type logits [B, 3] or None)."""
        if self.kind == "joint":
            return self.model(images, training=training)
        logits = self.model(images, training=training)
        return (logits, None) if self.kind == "clean" else (None, logits)

    def _replica_step(self, images, labels):
        """One replica's share of the update, on its contiguous slice of the global batch.

        The loss layers divide by the batch they see (m = M / R samples), so the replica's
        loss share is its local loss · m / M = Σ_slice / M; the optimizer sums the shares'
        gradients over the replicas. Returns (loss share [], dict term → share [],
        correct [], labelled count [], finite float32 [] 1/0).
        """
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group
        batch_size = self.settings.batch_size
        local = batch_size // context.num_replicas_in_sync
        images = images[replica * local:(replica + 1) * local]
        labels = labels[replica * local:(replica + 1) * local]
        share = float(local) / float(batch_size)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            clean_logits, ntype_logits = self._forward(images, training=True)
            terms = objectives.loss_terms(self.config.stage, clean_logits, ntype_logits, labels,
                                          self.noisy_label_loss)
            loss = objectives.weighted_loss(terms, self.settings)
            loss_share = loss * share
        grads = tape.gradient(loss_share, variables)
        # A variable no loss reaches still gets Caffe's weight decay.
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        finite = tf.reduce_all([tf.math.is_finite(loss)] + [tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        self.optimizer.apply_gradients(zip(grads, variables))
        targets, branch = objectives.train_accuracy_target(self.config.stage, labels)
        correct, count = layers.masked_accuracy(targets, clean_logits if branch == "clean" else ntype_logits)
        return (loss_share, {name: value * share for name, value in terms.items()}, correct, count,
                tf.cast(finite, tf.float32))

    def _train_step(self, images, labels) -> Dict[str, tf.Tensor]:
        """One iteration on a global batch. Returns scalars: loss, one per loss term,
        correct and count (labelled samples), lr (the iteration's learning rate), finite."""
        lr = self.optimizer.schedule(self.global_step)
        loss, terms, correct, count, finite = self.strategy.run(self._replica_step, args=(images, labels))
        total = lambda value: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)  # noqa: E731
        self.global_step.assign_add(1)
        outputs = {"loss": total(loss), "correct": total(correct), "count": total(count), "lr": lr,
                   "finite": total(finite) >= self.replicas}
        outputs.update({name: total(value) for name, value in terms.items()})
        return outputs

    # -- the task interface of noisylabels.training_loop -------------------------------------------

    @property
    def step(self) -> int:
        """Iterations done (Caffe's iteration count)."""
        return int(self.global_step.numpy())

    @property
    def is_chief(self) -> bool:
        return distribution.is_chief(self.strategy)

    def start(self, writer) -> None:
        """Sets the summary writer and opens the training stream at the current iteration:
        the data order is a function of (seed, iteration), so a resumed run sees the
        batches an uninterrupted run sees."""
        c = self.config
        self._writer = writer
        data = datasets.make_dataset(c.dataset, c.data_dir, TRAIN_SPLIT[c.stage], self.settings.batch_size,
                                     training=True, seed=c.seed, start_iteration=self.step)
        self._batches = iter(data)
        self._window_start = time.time()
        self._last_log_step = self.step

    def next_step(self) -> Dict[str, tf.Tensor]:
        images, labels = next(self._batches)
        return self.train_step(images, labels)

    def after_step(self, step: int, outputs: dict) -> None:
        del step, outputs  # train/ summaries are written at each display

    def log_due(self, step: int) -> bool:
        iteration = step - 1  # the 0-based index of the iteration just run
        return iteration % self.settings.display == 0 or step == self.settings.max_iter

    def log(self, step: int, means: Dict[str, float], outputs: Dict[str, tf.Tensor]) -> None:
        """Caffe's display lines and the train/ scalars, for the iterations since the last
        display (means), at the index of the iteration just run."""
        iteration = step - 1
        elapsed = max(time.time() - self._window_start, 1e-9)
        lr = float(outputs["lr"])
        accuracy = means["correct"] / means["count"] if means["count"] else 0.0
        window_steps = step - self._last_log_step
        logging.info("Iteration %d (%.3g iter/s), loss = %.6g", iteration, window_steps / elapsed, means["loss"])
        scalars = {"train/loss": means["loss"], "train/lr": lr, "train/accuracy": accuracy}
        for name in objectives.LOSS_TERMS:
            if name in means:
                weight = self.settings.loss_weight(name)
                logging.info("    Train net output: %s = %.6g (* %g = %.6g loss)", name, means[name], weight,
                             weight * means[name])
                scalars["train/" + name] = means[name]
        logging.info("    Train net output: accuracy = %.4f", accuracy)
        logging.info("Iteration %d, lr = %g", iteration, lr)
        with self._writer.as_default():
            for tag, value in scalars.items():
                tf.summary.scalar(tag, float(value), step=iteration)
        self._last_log_step = step
        self._window_start = time.time()

    def validate(self, step: int) -> Dict[str, float]:
        """Tests on every test split (the time is not counted in iter/s). Returns the metrics."""
        started = time.time()
        metrics = evaluation.evaluate(self.tests, step, self._writer, self.num_classes)
        if self._window_start is not None:
            self._window_start += time.time() - started
        return metrics

    def on_saved(self, step: int, path: str) -> None:
        del step
        logging.info("Snapshotting to %s", path)

    def on_best(self, step: int, value: float, path: str) -> None:
        del step, value, path  # a stage keeps no best copy (Caffe tests, it does not select)

    def on_terminated(self, step: int, path: str) -> None:
        logging.info("SIGTERM: snapshot %s at iteration %d; stopping.", path, step)

    def restore(self, path: str, flag: str = "train_dir") -> None:
        """Restores model, momentum slots and iteration counts; InputError if they do not fit
        (tf.errors.OpError or ValueError for damaged files pass through)."""
        status = self.checkpoint.restore(path)
        try:
            status.assert_existing_objects_matched()
        except AssertionError as err:
            raise InputError("checkpoint does not fit this stage's model and solver (%s)"
                             % str(err).splitlines()[0], path=path, field="--%s" % flag) from None
