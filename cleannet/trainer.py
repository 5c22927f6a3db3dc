"""CleanNet training: mixed verified/unverified batches, validation, checkpoints.

`train(config)` is what train.py runs. The feature tables are loaded once into tensors,
the `tf.data` pipelines of cleannet.data produce row indices, and the `tf.function`
training step gathers the batch and each sample's reference set inside the graph. The
step loop, checkpoints and run directory are the shared core's (noisylabels.training_loop,
noisylabels.run_directory); `Trainer` is CleanNet's task for it.

Fixes of the original's defects (docs/originals.md):
- validation runs in inference mode (no dropout);
- validation scores every row of val.npy, the last batch partial (the original dropped
  the rows after the last full batch and so refused a val.npy smaller than one batch);
- checkpoints are `CHECKPOINT_DIR/ckpt-STEP.*` files written by tf.train.CheckpointManager
  (not hidden `.index` files named after the directory), and the best model by
  validation accuracy is a real copy of the weights in `CHECKPOINT_DIR/best/`, with its
  step and accuracy in `best/best_model.json`;
- a final checkpoint is also written at n_step when n_step is not a multiple of
  val_interval (the original lost those last steps).
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from cleannet import calibration
from cleannet.numpy_model import NumpyCleanNet
from cleannet import checkpoints
from cleannet import data
from cleannet import scoring
from cleannet import summaries
from cleannet.config import RECORDED_SETTINGS, TrainConfig, data_files
from cleannet.losses import cross_class_loss, total_loss
from cleannet.metrics import accuracy, similarity
from cleannet.model import CleanNet, normalize_features
from cleannet.optimizer import TF1Momentum, staircase_learning_rate
from cleannet import datafiles
from noisylabels import distribution
from cleannet import tsv_reader
from noisylabels.errors import InputError, check_flag
from noisylabels.progress import Progress
from noisylabels.run_directory import RunDirectory
from noisylabels.run_record import make_record
from noisylabels.training_loop import TrainingLoop, TrainingTask, summary_writers

__all__ = ["TrainConfig", "FeatureTables", "Trainer", "load_tables", "train"]

TRAIN_ACCURACY_THRESHOLD = 0.1  # the original's train accuracy ignores --val_sim_thres
CROSS_CLASS_SEED_OFFSET = 2  # --recipe's other-class draws use seed + 2 (the data streams use seed, seed + 1)


def check_log_normalisable(array: np.ndarray, path: str, embed_norm: str) -> None:
    """embed_norm=log takes log(x + 1): refuse negative features up front (NaN otherwise)."""
    if embed_norm == "log" and array.size and float(np.min(array)) < 0:
        raise InputError("has negative features (min %g); --embed_norm=log computes log(x + 1) and "
                         "needs non-negative features: use --embed_norm=l2norm or no_norm"
                         % float(np.min(array)), path=path, field="feature")


@dataclasses.dataclass
class FeatureTables:
    """The data a run needs, as NumPy arrays (rows × img_dim float32)."""
    train_features: np.ndarray
    train_class_ids: np.ndarray
    train_vlabels: np.ndarray
    val_features: np.ndarray
    val_class_ids: np.ndarray
    val_vlabels: np.ndarray
    reference: np.ndarray
    all_features: np.ndarray = None
    all_class_ids: np.ndarray = None
    all_offsets: np.ndarray = None


def load_tables(config: TrainConfig) -> FeatureTables:
    """Loads ref.npy, train.npy, val.npy and (when batch_size_unsup > 0) all.npy, checked."""
    path = lambda name: os.path.join(config.data_dir, name)
    reference = datafiles.load_ref(path("ref.npy"), config.img_dim, config.num_ref)
    num_classes = reference.shape[0]
    check_log_normalisable(reference, path("ref.npy"), config.embed_norm)
    verified = {}
    for split in ("train", "val"):
        features, class_ids, vlabels = datafiles.load_verified(path(split + ".npy"), config.img_dim)
        datafiles.check_class_ids(class_ids, num_classes, path(split + ".npy"))
        check_log_normalisable(features, path(split + ".npy"), config.embed_norm)
        if len(features) == 0:
            raise InputError("has no rows", path=path(split + ".npy"))
        verified[split] = (features, class_ids, vlabels)
    tables = FeatureTables(*verified["train"], *verified["val"], reference=reference)
    if config.batch_size_unsup > 0:
        features, class_ids = datafiles.load_all(path("all.npy"), config.img_dim, allow_pickle=config.allow_pickle)
        datafiles.check_class_ids(class_ids, num_classes, path("all.npy"))
        features = np.ascontiguousarray(features, dtype=np.float32)
        check_log_normalisable(features, path("all.npy"), config.embed_norm)
        tables.all_features = features
        tables.all_class_ids = np.asarray(class_ids, np.int32)
        tables.all_offsets = data.class_offsets(class_ids, num_classes)
        if len(features) == 0:
            raise InputError("has no rows, but --batch_size_unsup=%d needs unverified samples"
                             % config.batch_size_unsup, path=path("all.npy"))
        if config.recipe_settings().class_score == "neighbours":
            scoring.check_bank(class_ids, num_classes, path("all.npy"))
    return tables


class Trainer(TrainingTask):
    """CleanNet's training task: the model, optimizer and compiled train/validation steps,
    plus what noisylabels.training_loop.TrainingLoop asks of a task (next_step, log, validate)."""

    def __init__(self, config: TrainConfig, tables: FeatureTables,
                 strategy: tf.distribute.Strategy | None = None) -> None:
        self.config = config
        self.tables = tables
        self.recipe = config.recipe_settings()
        if self.recipe.cross_class_weight > 0 or self.recipe.confident_weight > 0:
            check_flag(tables.reference.shape[0] >= 2, "recipe",
                       "%s pairs samples with other classes, but ref.npy has %d class; pass --recipe=paper"
                       % (config.recipe, tables.reference.shape[0]))
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        for flag in ("batch_size_sup", "batch_size_unsup"):
            check_flag(getattr(config, flag) % replicas == 0, flag,
                       "%d is not divisible by the %d replicas (batch sizes are global)"
                       % (getattr(config, flag), replicas))
        with self.strategy.scope():
            # The shared reference encoder (CleanNet.call_by_class) was slower than the per-sample
            # one under XLA, whose tf.unique output is bounded by the batch size: kept off there.
            self.model = CleanNet(config.num_ref, config.img_dim, config.embed_norm, config.dropout_rate,
                                  config.weight_decay, share_reference_encoder=not config.jit_compile).build_variables()
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.optimizer = TF1Momentum(learning_rate=self.current_learning_rate, momentum=config.momentum)
            if config.mixed_precision:
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
        self.checkpoint = checkpoints.make_checkpoint(self.model, self.global_step, self.optimizer)
        self.is_chief = distribution.is_chief(self.strategy)
        self._tensors = {
            "train_features": tf.constant(tables.train_features),
            "train_class_ids": tf.constant(tables.train_class_ids, tf.int32),
            "train_vlabels": tf.constant(tables.train_vlabels, tf.float32),
            "reference": tf.constant(tables.reference),
        }
        if tables.all_features is not None:
            self._tensors["all_features"] = tf.constant(tables.all_features)
            self._tensors["all_class_ids"] = tf.constant(tables.all_class_ids, tf.int32)
        else:
            self._tensors["all_features"] = tf.zeros([0, config.img_dim], tf.float32)
            self._tensors["all_class_ids"] = tf.zeros([0], tf.int32)
        # The reference table is the same at every step: normalised once (used by the shared encoder).
        self._tensors["normalized_reference"] = normalize_features(self._tensors["reference"], config.embed_norm)
        self.train_step = tf.function(self._train_step, jit_compile=config.jit_compile)
        self.validation_step = tf.function(self._validation_step, reduce_retracing=True)
        self._batches = None
        self._writers = None
        self._class_names = tsv_reader.read_class_list(config.class_list) if config.class_list else None

    def current_learning_rate(self) -> tf.Tensor:
        c = self.config
        return staircase_learning_rate(self.global_step, c.learning_rate, c.lr_update, c.lr_decay)

    def _replica_step(self, sup_indices, unsup_indices):
        """One replica's share of the update; the index batches are global, each replica
        takes its contiguous slice, so any number of replicas sees the same global batch.

        Returns:
          (objective share [], regularisation [], correct verified predictions []).
        """
        t = self._tensors
        c = self.config
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        replica = context.replica_id_in_sync_group
        local_sup = c.batch_size_sup // replicas
        local_unsup = c.batch_size_unsup // replicas
        sup_indices = sup_indices[replica * local_sup:(replica + 1) * local_sup]
        unsup_indices = unsup_indices[replica * local_unsup:(replica + 1) * local_unsup]
        query = tf.concat([tf.gather(t["train_features"], sup_indices),
                           tf.gather(t["all_features"], unsup_indices)], axis=0)
        class_ids = tf.concat([tf.gather(t["train_class_ids"], sup_indices),
                               tf.gather(t["all_class_ids"], unsup_indices)], axis=0)
        vlabel = tf.concat([tf.gather(t["train_vlabels"], sup_indices), tf.zeros([local_unsup])], axis=0)
        vflag = tf.concat([tf.ones([local_sup]), tf.zeros([local_unsup])], axis=0)
        global_batch = float(c.batch_size_sup + c.batch_size_unsup)
        with tf.GradientTape() as tape:
            phi_s, v_q, phi_q, v_qr = self.model.call_by_class(query, t["reference"], class_ids, training=True,
                                                               normalized_table=t["normalized_reference"])
            cos_sim = similarity(phi_s, phi_q)
            per_sample = total_loss(vlabel, cos_sim, phi_s, v_q, phi_q, v_qr, vflag, c.neg_weight)
            if self.recipe.cross_class_weight > 0 or self.recipe.confident_weight > 0:
                per_sample += self._cross_class_terms(phi_q, class_ids, vlabel, vflag, cos_sim)
            # Summed over replicas, these shares give the global batch mean + regularisation.
            objective_share = tf.reduce_sum(per_sample) / global_batch
            regularization = self.model.regularization_loss()
            loss_share = objective_share + regularization / replicas
            if c.mixed_precision:
                loss_share = self.optimizer.scale_loss(loss_share)
        variables = self.model.trainable_variables
        gradients = tape.gradient(loss_share, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(
            vlabel[:local_sup], tf.cast(cos_sim[:local_sup] >= TRAIN_ACCURACY_THRESHOLD, tf.float32)), tf.float32))
        return objective_share, regularization, correct

    def _cross_class_terms(self, phi_q, class_ids, vlabel, vflag, cos_sim):
        """--recipe's cross-class negatives, per sample [B]: each sample against one other class
        drawn at random (stateless, seeded by (seed, step)), weighted by cross_class_weight·vlabel
        (verified rows) or confident_weight·1[cos ≥ confident_cos] (unverified rows)."""
        r, t = self.recipe, self._tensors
        num_classes = tf.shape(t["reference"])[0]
        step_seed = tf.stack([tf.cast(self.config.seed + CROSS_CLASS_SEED_OFFSET, tf.int64), self.global_step])
        shift = tf.random.stateless_uniform(tf.shape(class_ids), seed=step_seed, minval=1, maxval=num_classes,
                                            dtype=tf.int32)
        other = (class_ids + shift) % num_classes
        classes, sample_class = tf.unique(other)
        phi_classes = self.model.ref_set_encoder(tf.gather(t["normalized_reference"], classes), training=True)
        cos_other = similarity(tf.gather(phi_classes, sample_class), phi_q)
        confident = tf.stop_gradient(tf.cast(cos_sim >= r.confident_cos, tf.float32))
        weight = vflag * r.cross_class_weight * vlabel + (1.0 - vflag) * r.confident_weight * confident
        return cross_class_loss(cos_other, weight, self.config.neg_weight)

    def _train_step(self, sup_indices, unsup_indices):
        """One update on batch_size_sup verified + batch_size_unsup unverified samples (global).

        Returns:
          dict of scalars: loss, objective_loss, regularization_loss, accuracy, lr, finite.
          A non-finite loss is reported through `finite`; the caller stops before saving.
        """
        lr = self.current_learning_rate()
        objective, regularization, correct = self.strategy.run(self._replica_step, args=(sup_indices, unsup_indices))
        objective = self.strategy.reduce(tf.distribute.ReduceOp.SUM, objective, axis=None)
        regularization = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, regularization, axis=None)
        correct = self.strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None)
        self.global_step.assign_add(1)
        loss = objective + regularization
        return {"loss": loss, "objective_loss": objective, "regularization_loss": regularization,
                "accuracy": correct / self.config.batch_size_sup, "lr": lr, "finite": tf.math.is_finite(loss)}

    def _validation_step(self, features, class_ids, vlabels, class_embeddings):
        """Loss and accuracy of one validation batch, in inference mode (no dropout)."""
        c = self.config
        v_q, phi_q, v_qr = self.model.encode_queries(features)
        phi_s = tf.gather(class_embeddings, class_ids)
        cos_sim = similarity(phi_s, phi_q)
        vflag = tf.ones_like(vlabels)
        objective = tf.reduce_mean(total_loss(vlabels, cos_sim, phi_s, v_q, phi_q, v_qr, vflag, c.neg_weight))
        loss = objective + self.model.regularization_loss()
        return loss, accuracy(vlabels, cos_sim, c.val_sim_thres), cos_sim

    def _validate_all(self):
        """Loss and accuracy over every val row (batch means weighted by batch size). Returns (loss, acc, cos [n])."""
        tb = self.tables
        class_embeddings = self.model.encode_classes(tf.constant(tb.reference))
        losses, accuracies, similarities, sizes = [], [], [], []
        batches = data.validation_batches(len(tb.val_features), self.config.val_batch_size)
        with Progress(total=len(batches), unit="batches", desc="validation") as progress:
            for indices in batches:
                loss, acc, cos_sim = self.validation_step(
                    tf.constant(tb.val_features[indices]), tf.constant(tb.val_class_ids[indices], tf.int32),
                    tf.constant(tb.val_vlabels[indices], tf.float32), class_embeddings)
                losses.append(float(loss))
                accuracies.append(float(acc))
                similarities.append(cos_sim.numpy())
                sizes.append(len(indices))
                progress.update(1)
        return (float(np.average(losses, weights=sizes)), float(np.average(accuracies, weights=sizes)),
                np.concatenate(similarities))

    # -- the task interface of noisylabels.training_loop ---------------------------------------

    @property
    def step(self) -> int:
        return int(self.global_step.numpy())

    def start(self, writers: dict) -> None:
        """Sets the summary writers ("train", "val") the task writes to."""
        self._writers = writers

    def next_step(self) -> dict:
        """One update on the next batch. The index pipeline opens at the current step on the
        first call: the data order is a function of (seed, step), so a resumed run sees
        the batches an uninterrupted run sees."""
        if self._batches is None:
            c = self.config
            self._batches = iter(data.training_indices(len(self.tables.train_features), self.tables.all_offsets,
                                                       c.batch_size_sup, c.batch_size_unsup, c.seed, self.step))
        sup_indices, unsup_indices = next(self._batches)
        return self.train_step(sup_indices, unsup_indices)

    def after_step(self, step: int, outputs: dict) -> None:
        """The original's per-step TensorBoard scalars (train writer)."""
        with self._writers["train"].as_default(step=step):
            for name in ("accuracy", "objective_loss", "regularization_loss", "loss", "lr"):
                tf.summary.scalar("train/" + name, outputs[name])

    def log_due(self, step: int) -> bool:
        return step % self.config.log_interval == 0

    def log(self, step: int, means: dict, outputs: dict) -> None:
        del means  # the original logs the step's own values
        logging.info("step %d: train/loss = %.6f, train/acc = %.6f", step, float(outputs["loss"]),
                     float(outputs["accuracy"]))

    def validate(self, step: int) -> dict:
        """Validates, writes val/ summaries and logs. Returns {"val_loss", "val_acc"}."""
        val_loss, val_acc, sims = self._validate_all()
        scored = len(sims)
        tb, c = self.tables, self.config
        with self._writers["val"].as_default(step=step):
            tf.summary.scalar("val/loss", val_loss)
            tf.summary.scalar("val/acc", val_acc)
            summaries.write_validation_summaries(step, sims, tb.val_vlabels[:scored], tb.val_class_ids[:scored],
                                                 c.val_sim_thres, self._class_names)
        self._writers["val"].flush()
        logging.info("step %d: val/loss = %.6f, val/acc = %.6f", step, val_loss, val_acc)
        return {"val_loss": val_loss, "val_acc": val_acc}

    def on_best(self, step: int, value: float, path: str) -> None:
        """Logs the new best model and stores its calibrated relative decision beside it
        (best/calibration.json, what `inference.py --decision=relative` reads)."""
        logging.info("best model (val/acc %.6f) saved in %s", value, os.path.dirname(path))
        self.on_saved(step, path)
        if not self.is_chief or self.tables.reference.shape[0] < 2:
            return
        tb = self.tables
        class_score, bank = self.recipe.class_score, None
        if class_score == "neighbours":
            if tb.all_features is None:
                logging.warning("No calibration written for %s: the neighbours class score needs all.npy "
                                "(--batch_size_unsup > 0)", path)
                return
            bank = (tb.all_features, tb.all_class_ids)
        try:
            result = calibration.calibrate_model(NumpyCleanNet.from_keras(self.model), tb.reference, tb.val_features,
                                                 tb.val_class_ids, tb.val_vlabels, path, class_score, bank=bank)
        except InputError as err:  # e.g. a val.npy without wrong labels: training goes on
            logging.warning("No calibration written for %s: %s", path, err)
            return
        try:
            calibration.write_calibration(os.path.dirname(path), result)
        except ValueError as err:  # a non-finite calibration is not written
            logging.warning("No calibration written for %s: %s", path, err)

    def on_saved(self, step: int, path: str) -> None:
        """Writes the inference file (weights + model configuration, .npz) beside the checkpoint."""
        if self.is_chief:
            checkpoints.write_inference_file(NumpyCleanNet.from_keras(self.model), path, step)

    def on_terminated(self, step: int, path: str) -> None:
        logging.info("SIGTERM: checkpoint saved in %s; stopping.", path)

    def restore(self, path: str) -> None:
        checkpoints.restore(self.checkpoint, path, self.config.img_dim, self.config.num_ref,
                            self.config.embed_norm, partial=True)


def run_record(config: TrainConfig) -> dict:
    """What the run trains on: the data files it reads and the settings in RECORDED_SETTINGS."""
    files = data_files(config)
    settings = {name: getattr(config, name) for name in RECORDED_SETTINGS}
    settings["embed_norm"] = checkpoints.canonical_embed_norm(settings["embed_norm"])
    if config.recipe != "paper":  # recorded only when not the paper's, so that earlier runs still resume
        settings["recipe"] = config.recipe
    return make_record(files, settings)


def _resume(trainer: Trainer, run_dir: RunDirectory) -> float:
    """Restores the newest readable checkpoint and validates it. Returns the best val/acc so far."""
    latest = run_dir.restore_latest(trainer.restore)
    if not latest:
        logging.info("Training from scratch.")
        return 0.0
    logging.info("Recovered the model at global step = %d from %s.", trainer.step, latest)
    best = trainer.validate(trainer.step)["val_acc"]
    stored = (run_dir.best_info() or {}).get("val_acc")
    return max(best, float(stored)) if isinstance(stored, (int, float)) else best


def train(config: TrainConfig) -> dict:
    """Runs training to config.n_step.

    Returns:
      {"step": last step, "best_val_acc": float, "last_saved_step": int or None}.
    """
    distribution.split_cpu(config.num_cpu_replicas)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = distribution.make_strategy(config.distribution)
    tables = load_tables(config)
    trainer = Trainer(config, tables, strategy)
    run_dir = RunDirectory(config.checkpoint_dir, trainer.checkpoint, strategy, max_to_keep=config.max_checkpoints,
                           keep_best=True)
    with run_dir:
        run_dir.check_record(run_record(config))
        writers = summary_writers(config.log_dir, ("train", "val"), trainer.is_chief)
        trainer.start(writers)
        best = _resume(trainer, run_dir)
        resumed_at = trainer.step if run_dir.latest else None
        loop = TrainingLoop(trainer, run_dir, end_step=config.n_step, validate_every=config.val_interval,
                            save_every=config.val_interval, best_metric="val_acc", best_so_far=best)
        loop.run()
        for writer in writers.values():
            writer.close()
    last_saved = loop.last_saved_step if loop.last_saved_step is not None else resumed_at
    return {"step": trainer.step, "best_val_acc": loop.best_value, "last_saved_step": last_saved}
