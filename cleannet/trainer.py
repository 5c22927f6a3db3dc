"""CleanNet training (SPEC.md 1.4): mixed verified/unverified batches, validation, checkpoints.

`train(config)` is what train.py runs. The feature tables are loaded once into tensors,
the `tf.data` pipelines of cleannet.data produce row indices, and the `tf.function`
training step gathers the batch and each sample's reference set inside the graph.

Fixes of the original's defects (SPEC.md 1.4):
- validation runs in inference mode (no dropout);
- checkpoints are `CHECKPOINT_DIR/ckpt-STEP.*` files written by tf.train.CheckpointManager
  (not hidden `.index` files named after the directory), and the best model by
  validation accuracy is a real copy of the weights in `CHECKPOINT_DIR/best/`, with its
  step and accuracy in `best/best_model.json`;
- a final checkpoint is also written at n_step when n_step is not a multiple of
  val_interval (the original lost those last steps).
"""

import dataclasses
import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from cleannet import checkpoints
from cleannet import data
from cleannet import summaries
from cleannet.losses import total_loss
from cleannet.metrics import accuracy, similarity
from cleannet.model import EMBED_NORMS, CleanNet, normalize_features
from cleannet.optimizer import TF1Momentum, staircase_learning_rate
from util import datafiles
from util import distribution
from util import tsv_reader
from util.errors import InputError, TrainingError, check_flag
from util.fileio import atomic_open
from util.progress import Progress

TRAIN_ACCURACY_THRESHOLD = 0.1  # the original's train accuracy ignores --val_sim_thres
BEST_MODEL_INFO = "best_model.json"


@dataclasses.dataclass
class TrainConfig:
    """train.py's flags (SPEC.md 1.4 names and defaults) plus the port's additions."""
    data_dir: str = "./data/"
    checkpoint_dir: str = "./train/checkpoints/"
    log_dir: str = "./train/log/"
    log_interval: int = 100
    val_interval: int = 2000
    img_dim: int = 2048
    num_ref: int = 32
    batch_size_sup: int = 32
    batch_size_unsup: int = 32
    val_batch_size: int = 64
    learning_rate: float = 0.01
    n_step: int = 60000
    lr_update: int = 30000
    lr_decay: float = 0.1
    dropout_rate: float = 0.0
    weight_decay: float = 0.0001
    neg_weight: float = 5.0
    val_sim_thres: float = 0.1
    momentum: float = 0.9
    embed_norm: str = "log"
    # Additions of the port.
    seed: int = 123
    allow_pickle: bool = False
    jit_compile: bool = False
    max_checkpoints: int = 5
    class_list: str = None
    distribution: str = "none"
    num_cpu_replicas: int = 0
    mixed_precision: bool = False


def validate_config(config):
    """Raises InputError for flags out of range."""
    check_flag(config.img_dim > 0, "img_dim", "must be positive, got %d" % config.img_dim)
    check_flag(config.num_ref > 0, "num_ref", "must be positive, got %d" % config.num_ref)
    check_flag(config.batch_size_sup > 0, "batch_size_sup", "must be positive, got %d" % config.batch_size_sup)
    check_flag(config.batch_size_unsup >= 0, "batch_size_unsup",
               "must be 0 or more, got %d" % config.batch_size_unsup)
    check_flag(config.val_batch_size > 0, "val_batch_size", "must be positive, got %d" % config.val_batch_size)
    check_flag(config.log_interval > 0, "log_interval", "must be positive, got %d" % config.log_interval)
    check_flag(config.val_interval > 0, "val_interval", "must be positive, got %d" % config.val_interval)
    check_flag(config.n_step >= 0, "n_step", "must be 0 or more, got %d" % config.n_step)
    check_flag(config.lr_update > 0, "lr_update", "must be positive, got %d" % config.lr_update)
    check_flag(config.learning_rate > 0, "learning_rate", "must be positive, got %g" % config.learning_rate)
    check_flag(config.lr_decay > 0, "lr_decay", "must be positive, got %g" % config.lr_decay)
    check_flag(0.0 <= config.dropout_rate < 1.0, "dropout_rate",
               "must be in [0, 1), got %g" % config.dropout_rate)
    check_flag(config.weight_decay >= 0, "weight_decay", "must be 0 or more, got %g" % config.weight_decay)
    check_flag(config.neg_weight >= 0, "neg_weight", "must be 0 or more, got %g" % config.neg_weight)
    check_flag(0.0 <= config.momentum <= 1.0, "momentum", "must be in [0, 1], got %g" % config.momentum)
    check_flag(config.embed_norm in EMBED_NORMS, "embed_norm",
               "must be one of %s, got %r" % ("|".join(EMBED_NORMS), config.embed_norm))
    check_flag(config.max_checkpoints > 0, "max_checkpoints", "must be positive")
    check_flag(config.distribution in distribution.DISTRIBUTIONS, "distribution",
               "must be one of %s, got %r" % ("|".join(distribution.DISTRIBUTIONS), config.distribution))
    check_flag(config.num_cpu_replicas >= 0, "num_cpu_replicas", "must be 0 or more")
    check_flag(not (config.jit_compile and config.distribution != "none"), "jit_compile",
               "is supported with --distribution=none only")


def check_log_normalisable(array, path, embed_norm):
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


def load_tables(config):
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
    if len(verified["val"][0]) < config.val_batch_size:
        raise InputError("has %d rows, fewer than --val_batch_size=%d: validation would see no full batch"
                         % (len(verified["val"][0]), config.val_batch_size), path=path("val.npy"))
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
    return tables


class Trainer:
    """Holds the model, optimizer, checkpoints and the compiled train/validation steps."""

    def __init__(self, config, tables, strategy=None):
        self.config = config
        self.tables = tables
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
        directory = distribution.output_dir(config.checkpoint_dir, self.strategy)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                                  max_to_keep=config.max_checkpoints, checkpoint_name="ckpt")
        self.best_dir = os.path.join(directory, checkpoints.BEST_SUBDIR)
        self.best_manager = tf.train.CheckpointManager(self.checkpoint, self.best_dir, max_to_keep=1,
                                                       checkpoint_name="ckpt")
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

    def current_learning_rate(self):
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

    def validate(self):
        """Mean of per-batch loss and accuracy over full val batches. Returns (loss, acc, cos [n])."""
        tb = self.tables
        class_embeddings = self.model.encode_classes(tf.constant(tb.reference))
        losses, accuracies, similarities = [], [], []
        batches = data.validation_batches(len(tb.val_features), self.config.val_batch_size)
        with Progress(total=len(batches), unit="batches", desc="validation") as progress:
            for indices in batches:
                loss, acc, cos_sim = self.validation_step(
                    tf.constant(tb.val_features[indices]), tf.constant(tb.val_class_ids[indices], tf.int32),
                    tf.constant(tb.val_vlabels[indices], tf.float32), class_embeddings)
                losses.append(float(loss))
                accuracies.append(float(acc))
                similarities.append(cos_sim.numpy())
                progress.update(1)
        return float(np.mean(losses)), float(np.mean(accuracies)), np.concatenate(similarities)


def remove_interrupted_saves(checkpoint_dir):
    """Deletes `ckpt-N_temp` directories that a save killed mid-write leaves behind
    (tf.train.Checkpoint writes there and renames; the checkpoints themselves stay intact)."""
    for directory in (checkpoint_dir, os.path.join(checkpoint_dir, checkpoints.BEST_SUBDIR)):
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if name.startswith("ckpt-") and name.endswith("_temp"):
                    shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _read_best_accuracy(best_dir):
    try:
        with open(os.path.join(best_dir, BEST_MODEL_INFO)) as f:
            return float(json.load(f)["val_acc"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def train(config):
    """Runs training to config.n_step; returns a dict with the final step and best accuracy."""
    validate_config(config)
    distribution.split_cpu(config.num_cpu_replicas)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = distribution.make_strategy(config.distribution)
    remove_interrupted_saves(config.checkpoint_dir)
    tables = load_tables(config)
    trainer = Trainer(config, tables, strategy)
    if trainer.is_chief:
        train_writer = tf.summary.create_file_writer(os.path.join(config.log_dir, "train"))
        val_writer = tf.summary.create_file_writer(os.path.join(config.log_dir, "val"))
    else:
        train_writer = val_writer = tf.summary.create_noop_writer()

    class_names = tsv_reader.read_class_list(config.class_list) if config.class_list else None

    def run_validation():
        step = int(trainer.global_step.numpy())
        val_loss, val_acc, similarities = trainer.validate()
        scored = len(similarities)
        with val_writer.as_default(step=step):
            tf.summary.scalar("val/loss", val_loss)
            tf.summary.scalar("val/acc", val_acc)
            summaries.write_validation_summaries(step, similarities, tables.val_vlabels[:scored],
                                                 tables.val_class_ids[:scored], config.val_sim_thres, class_names)
        val_writer.flush()
        logging.info("step %d: val/loss = %.6f, val/acc = %.6f", step, val_loss, val_acc)
        return val_acc

    def save_best(val_acc):
        trainer.best_manager.save(checkpoint_number=trainer.global_step)
        with atomic_open(os.path.join(trainer.best_dir, BEST_MODEL_INFO)) as f:
            json.dump({"step": int(trainer.global_step.numpy()), "val_acc": val_acc}, f)
        logging.info("best model (val/acc %.6f) saved in %s", val_acc, trainer.best_dir)

    best_acc = 0.0
    latest = trainer.manager.latest_checkpoint
    if latest:
        checkpoints.restore(trainer.checkpoint, latest, config.img_dim, config.num_ref, config.embed_norm,
                            partial=True)
        logging.info("Recovered the model at global step = %d from %s.", int(trainer.global_step.numpy()), latest)
        best_acc = run_validation()
        stored_best = _read_best_accuracy(trainer.best_dir)
        if stored_best is not None:
            best_acc = max(best_acc, stored_best)
    else:
        logging.info("Training from scratch.")

    start_step = int(trainer.global_step.numpy())
    indices = data.training_indices(len(tables.train_features), tables.all_offsets, config.batch_size_sup,
                                    config.batch_size_unsup, config.seed, start_step)
    step = start_step
    last_saved = start_step if latest else None
    with distribution.TerminationFlag() as termination, train_writer.as_default():
        iterator = iter(indices)
        while step < config.n_step:
            sup_indices, unsup_indices = next(iterator)
            out = trainer.train_step(sup_indices, unsup_indices)
            if not bool(out["finite"]):
                raise TrainingError("the loss became %s at step %d; nothing from that step was saved. The last "
                                    "good checkpoint is %s. Lower --learning_rate or check the features for "
                                    "extreme values." % (float(out["loss"]), step + 1,
                                                         trainer.manager.latest_checkpoint or "none"))
            step = int(trainer.global_step.numpy())
            tf.summary.scalar("train/accuracy", out["accuracy"], step=step)
            tf.summary.scalar("train/objective_loss", out["objective_loss"], step=step)
            tf.summary.scalar("train/regularization_loss", out["regularization_loss"], step=step)
            tf.summary.scalar("train/loss", out["loss"], step=step)
            tf.summary.scalar("train/lr", out["lr"], step=step)
            if step % config.log_interval == 0:
                logging.info("step %d: train/loss = %.6f, train/acc = %.6f", step, float(out["loss"]),
                             float(out["accuracy"]))
            at_end = step >= config.n_step
            if step % config.val_interval == 0 or at_end:
                val_acc = run_validation()
                path = trainer.manager.save(checkpoint_number=step)
                last_saved = step
                logging.info("Model saved in path: %s", path)
                if val_acc > best_acc or trainer.best_manager.latest_checkpoint is None:
                    best_acc = max(best_acc, val_acc)
                    save_best(val_acc)
            elif termination.requested:
                path = trainer.manager.save(checkpoint_number=step)
                logging.info("SIGTERM: checkpoint saved in %s; stopping.", path)
                break
            if termination.requested:
                break
    train_writer.flush()
    return {"step": step, "best_val_acc": best_acc, "last_saved_step": last_saved}
