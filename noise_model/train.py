"""Trains one stage (or every stage) of Xiao et al.'s noisy-label model, Caffe-style.

    python -m noise_model.train --dataset=cifar10 --stage=clean
        --data_dir=data/cifar10 --train_dir=train/cifar10/clean
    python -m noise_model.train --dataset=digits --stage=all
        --data_dir=data/digits --train_dir=train/digits
(one command each; docs/noise_model.md lists every stage's command and flag.)

Stages (SPEC.md 2.3 / 2.4; defaults per dataset and stage in noise_model/stages.py):
  clean         the clean-label net on "clean_train" with the clean label.
  noisy_gt      the baseline: from clean, on "mixed_train" with the clean label where
                there is one, else the noisy label.
  ntype         the noise-type net on "ntype_train"; tested on "ntype_test".
  joint         clean net + noise-type net on "mixed_train" with
                clean_loss_weight·CE(clean) + ntype_loss_weight·CE(noise type)
                + noisy_loss_weight·NoisyLabelLoss(clean logits, noise-type logits, ỹ).
  joint_stage2  (Clothing1M) continues joint's whole training state (weights, momentum,
                iteration count) with stage 2's loss weights and update_noise_lr.
  all           clean → noisy_gt → ntype → joint (Clothing1M: clean → ntype → joint →
                joint_stage2), each in train_dir/STAGE, then prints the SPEC.md Part 3 table.

The solver is Caffe's SGD (solver.CaffeSGD: momentum, weight decay added to the gradient,
bias lr ×2, "step" lr policy). As in Caffe, the net is tested at iteration 0 and every
test_interval iterations, and once more at max_iter; a snapshot is written every
snapshot_interval iterations and at max_iter. A run restarted with the same train_dir
resumes from its latest checkpoint and sees exactly the batches an uninterrupted run
sees (the data order is a pure function of (--seed, iteration): datasets.training_order).
SIGTERM writes a checkpoint at the current iteration and exits 0. TensorBoard summaries
(scalars, and the views of noise_model/summaries.py) go to train_dir.

Distribution (--distribution=mirrored over GPUs or --num_cpu_replicas logical CPUs,
multi_worker from TF_CONFIG): --batch_size stays the global batch; each replica trains
on its contiguous slice of it and the update equals a single-device run on the same
batch (see `_replica_step`). Worker 0 (or the chief) writes train_dir; other workers write
their checkpoints to train_dir/.worker_TYPE_ID and no TensorBoard logs.
"""

import dataclasses
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from noise_model import datasets
from noise_model import layers
from noise_model import solver as solver_lib
from noise_model import stages
from noise_model import summaries
from util.distribution import DISTRIBUTIONS, TerminationFlag, is_chief, make_strategy, output_dir, split_cpu
from util.errors import InputError, TrainingError, check_flag, cli_main
from util.fileio import atomic_open

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; called only when run as a script, so that
    importing this module (tests, other tools) defines none."""
    flags.DEFINE_string("dataset", None, "cifar10, clothing1m or digits.")
    flags.DEFINE_float("noise_level", 0.5,
                       "digits only: the synthetic noise level used when --data_dir holds no prepared "
                       "data yet and is prepared by this command (other data sets: see the prepare tools).")
    flags.DEFINE_string("stage", None, "clean, noisy_gt, ntype, joint, joint_stage2 (Clothing1M) "
                        "or all (every stage of the dataset's protocol in one process).")
    flags.DEFINE_string("data_dir", None, "The prepared data directory (written by "
                        "noise_model.cifar10, noise_model.clothing1m or noise_model.digits).")
    flags.DEFINE_string("train_dir", None, "This stage's checkpoints and TensorBoard logs "
                        "(--stage=all: one subdirectory per stage).")
    flags.DEFINE_string("clean_model_dir", None, "train_dir of the clean stage (the start of "
                        "noisy_gt, ntype and joint).")
    flags.DEFINE_string("ntype_model_dir", None, "train_dir of the ntype stage (the start of "
                        "joint's noise-type net).")
    flags.DEFINE_string("init_dir", None, "joint_stage2: train_dir of joint stage 1, whose whole "
                        "training state is continued.")
    flags.DEFINE_string("caffemodel_weights", None, "Optional Keras weights file (e.g. ImageNet "
                        "CaffeNet converted by noise_model.import_caffemodel) loaded by layer "
                        "name and shape into the clean net (stage clean) or the noise-type net "
                        "(stage ntype, before the copy from the clean stage).")
    flags.DEFINE_integer("seed", 0, "Seed of the weight initialisation and the data order.")
    flags.DEFINE_enum("distribution", "none", list(DISTRIBUTIONS),
                      "none: one device; mirrored: all local GPUs (or --num_cpu_replicas "
                      "logical CPU devices); multi_worker: MultiWorkerMirroredStrategy, cluster "
                      "from TF_CONFIG. --batch_size is the global batch.")
    flags.DEFINE_integer("num_cpu_replicas", 0, "Without a GPU: split the CPU into this many "
                         "logical devices (for --distribution=mirrored on CPU).")

    # Solver flags: None means the stages.py default for this dataset and stage.
    flags.DEFINE_float("base_lr", None, "Base learning rate.")
    flags.DEFINE_integer("stepsize", None, "lr × gamma every stepsize iterations.")
    flags.DEFINE_integer("max_iter", None, "Iteration to train up to.")
    flags.DEFINE_float("gamma", None, "lr drop factor (default 0.1).")
    flags.DEFINE_float("momentum", None, "SGD momentum (default 0.9).")
    flags.DEFINE_float("weight_decay", None, "Weight decay added to the gradient "
                       "(cifar10/digits 0.004, clothing1m 0.0005).")
    flags.DEFINE_float("bias_lr_mult", None, "lr multiplier of biases (default 2).")
    flags.DEFINE_float("bias_decay_mult", None, "Weight-decay multiplier of biases "
                       "(cifar10/digits 1, clothing1m 0).")
    flags.DEFINE_integer("batch_size", None, "Training batch size (cifar10/digits 100, clothing1m 128).")
    flags.DEFINE_integer("test_batch_size", None, "Test batch size (100).")
    flags.DEFINE_integer("test_interval", None, "Test every this many iterations "
                         "(cifar10 500, digits 250, clothing1m 1000).")
    flags.DEFINE_integer("snapshot_interval", None, "Checkpoint every this many iterations "
                         "(cifar10 1000, digits 500, clothing1m 5000).")
    flags.DEFINE_integer("display", None, "Log the training loss every this many iterations "
                         "(cifar10 100, digits 50, clothing1m 20).")
    flags.DEFINE_float("update_noise_lr", None, "Noisy-label loss: gradient multiplier for the "
                       "noise-type logits (joint: cifar10/digits 1; clothing1m 0, stage 2 0.1).")
    flags.DEFINE_float("clean_loss_weight", None, "Weight of the clean-label cross-entropy.")
    flags.DEFINE_float("ntype_loss_weight", None, "Weight of the noise-type cross-entropy.")
    flags.DEFINE_float("noisy_loss_weight", None, "Weight of the noisy-label loss.")


MAX_CHECKPOINTS_TO_KEEP = 5
LOSS_TERMS = ("clean_loss", "ntype_loss", "noisy_label_loss")
TERM_WEIGHT = {"clean_loss": "clean_loss_weight", "ntype_loss": "ntype_loss_weight",
               "noisy_label_loss": "noisy_loss_weight"}


def write_scalar(tag, value, step):
    """Writes one TensorBoard scalar to the default summary writer."""
    tf.summary.scalar(tag, float(value), step=step)


class NonFiniteLossError(TrainingError):
    """Training produced a NaN or infinite loss; nothing from that step was saved."""


@dataclasses.dataclass
class StageConfig:
    """Everything one stage's training run needs (flags resolved)."""
    dataset: str
    stage: str
    data_dir: str
    train_dir: str
    settings: dict
    seed: int = 0
    clean_model_dir: str = None
    ntype_model_dir: str = None
    init_dir: str = None
    caffemodel_weights: str = None


# ---------------------------------------------------------------------------------------
# Losses of a stage.


def stage_targets(stage, labels):
    """The label vectors a stage trains on.

    Args:
      stage: one of stages.STAGES.
      labels: int64 [B, 3] = (clean label, noisy label, noise type), −1 where unknown.

    Returns:
      dict with the entries that apply, each int64 [B] with −1 = none:
      "clean" (target of the clean-label CE: the clean label; noisy_gt: the clean label
      where there is one, else the noisy label), "ntype" (the noise type) and "noisy"
      (the noisy label, for the noisy-label loss).
    """
    labels = tf.convert_to_tensor(labels)
    clean, noisy, ntype = labels[:, 0], labels[:, 1], labels[:, 2]
    if stage == "clean":
        return {"clean": clean}
    if stage == "noisy_gt":
        return {"clean": tf.where(clean >= 0, clean, noisy)}
    if stage == "ntype":
        return {"ntype": ntype}
    return {"clean": clean, "ntype": ntype, "noisy": noisy}


def loss_terms(stage, clean_logits, ntype_logits, labels, noisy_label_loss=None):
    """The loss terms of a stage (before weighting).

    Args:
      clean_logits: float32 [B, L] or None (stage without a clean-label net).
      ntype_logits: float32 [B, 3] or None (stage without a noise-type net).
      labels: int64 [B, 3] as in `stage_targets`.
      noisy_label_loss: a layers.NoisyLabelLoss (joint stages).

    Returns:
      dict term name → float32 scalar: "clean_loss" (masked CE of the clean net),
      "ntype_loss" (masked CE of the noise-type net), "noisy_label_loss" (SPEC.md 2.1);
      only the terms whose net the stage has.
    """
    targets = stage_targets(stage, labels)
    terms = {}
    if "clean" in targets:
        terms["clean_loss"] = layers.masked_cross_entropy(targets["clean"], clean_logits)
    if "ntype" in targets:
        terms["ntype_loss"] = layers.masked_cross_entropy(targets["ntype"], ntype_logits)
    if "noisy" in targets:
        terms["noisy_label_loss"] = noisy_label_loss(
            [clean_logits, ntype_logits, targets["noisy"]])
    return terms


def weighted_loss(terms, settings):
    """Σ weight · term with the stage's loss weights (settings *_loss_weight)."""
    total = tf.constant(0.0, tf.float32)
    for name, value in terms.items():
        total += float(settings[TERM_WEIGHT[name]]) * value
    return total


def train_accuracy_target(stage, labels):
    """(targets int64 [B], branch) that the training accuracy is measured on."""
    targets = stage_targets(stage, labels)
    if stage == "ntype":
        return targets["ntype"], "ntype"
    return targets["clean"], "clean"


def test_splits(dataset, stage):
    """The splits a stage is tested on: list of (tag prefix, split, label column).

    The clean-label stages (and joint, through its clean net) are tested on the clean
    label of "test" (and, on Clothing1M, of the validation split "clean_val"); the ntype
    stage on the noise type of "ntype_test" (and Clothing1M's "ntype_val").
    """
    if stages.STAGE_NET[stage] == "ntype":
        tests = [("test", "ntype_test", 2)]
        if dataset == "clothing1m":
            tests.insert(0, ("val", "ntype_val", 2))
    else:
        tests = [("test", "test", 0)]
        if dataset == "clothing1m":
            tests.insert(0, ("val", "clean_val", 0))
    return tests


# ---------------------------------------------------------------------------------------
# One stage.


def _log_settings(cfg, num_classes, image_size):
    logging.info("Stage %s on %s (%d classes, %d×%d input), train_dir %s", cfg.stage,
                 cfg.dataset, num_classes, image_size, image_size, cfg.train_dir)
    for name in stages.SETTING_NAMES:
        logging.info("    %s: %s", name, cfg.settings[name])


def _check_train_dir(cfg, info):
    existing = stages.read_stage_info(cfg.train_dir)
    if existing is not None and (existing["dataset"] != info["dataset"]
                                 or existing["stage"] != info["stage"]
                                 or int(existing["num_classes"]) != info["num_classes"]):
        raise InputError("holds a %s run of stage %s; use a new --train_dir for stage %s of %s"
                         % (existing["dataset"], existing["stage"], info["stage"],
                            info["dataset"]), path=cfg.train_dir, field="--train_dir")


def _restore_stage1(cfg, checkpoint, num_classes):
    """joint_stage2: restores joint stage 1's model, momentum and iteration count."""
    check_flag(cfg.init_dir, "init_dir", "joint_stage2 continues joint stage 1: give its train_dir")
    info = stages.read_stage_info(cfg.init_dir, "init_dir")
    if info is None or info["stage"] != "joint" or info["dataset"] != cfg.dataset \
            or int(info["num_classes"]) != num_classes:
        raise InputError("is not the train_dir of a %s joint (stage 1) run" % cfg.dataset,
                         path=cfg.init_dir, field="--init_dir")
    path, iteration, finished = stages.find_checkpoint(cfg.init_dir, "init_dir")
    if not finished:
        logging.warning("%s has not finished (no %s); continuing its latest checkpoint",
                        cfg.init_dir, stages.FINAL_FILE)
    _restore_training_state(checkpoint, path, "init_dir")
    logging.info("Continuing joint stage 1's state from %s (iteration %d)", path, iteration)


def _restore_training_state(checkpoint, path, flag):
    """Restores model, momentum slots and iteration count; InputError if they do not fit."""
    status = checkpoint.restore(path)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise InputError("checkpoint does not fit this stage's model and solver (%s)"
                         % str(err).splitlines()[0], path=path, field="--%s" % flag) from None


def _make_eval_step(net, label_column, image_size, ntype_net=None):
    """tf.function (images, labels) → (Σ CE over labelled, num_correct, num_labelled,
    predictions int64 [B], p(z|x) float32 [B, 3] of `ntype_net` ([B, 0] without one))."""
    spec = [tf.TensorSpec([None, image_size, image_size, 3], tf.float32),
            tf.TensorSpec([None, 3], tf.int64)]

    @tf.function(input_signature=spec)
    def eval_step(images, labels):
        logits = net(images, training=False)
        targets = labels[:, label_column]
        batch = tf.cast(tf.shape(targets)[0], tf.float32)
        ce_sum = layers.masked_cross_entropy(targets, logits) * batch
        correct, count = layers.masked_accuracy(targets, logits)
        predictions = tf.argmax(logits, axis=1)
        if ntype_net is None:
            ntype_probs = tf.zeros([tf.shape(images)[0], 0], tf.float32)
        elif ntype_net is net:
            ntype_probs = tf.nn.softmax(logits)
        else:
            ntype_probs = tf.nn.softmax(ntype_net(images, training=False))
        return ce_sum, correct, count, predictions, ntype_probs

    return eval_step


def _evaluate(tests, iteration, writer, num_classes):
    """Runs every test split once; logs Caffe-style and writes `PREFIX/accuracy|loss` and
    the views of noise_model/summaries.py (confusion matrix; mean p(z|x) where the stage
    has a noise-type net)."""
    metrics = {}
    views = []
    for prefix, split, eval_step, dataset, column in tests:
        ce_sum, correct, count = 0.0, 0.0, 0.0
        targets, noisy, predictions, ntype_probs = [], [], [], []
        for images, labels in dataset:
            batch_ce, batch_correct, batch_count, batch_pred, batch_probs = eval_step(images, labels)
            ce_sum += float(batch_ce)
            correct += float(batch_correct)
            count += float(batch_count)
            labels = labels.numpy()
            targets.append(labels[:, column])
            noisy.append(labels[:, 1])
            predictions.append(batch_pred.numpy())
            ntype_probs.append(batch_probs.numpy())
        views.append((prefix, column, targets, noisy, predictions, ntype_probs))
        if not count:
            logging.warning("Split %s has no labelled sample: accuracy and loss reported as 0",
                            split)
        accuracy = correct / count if count else 0.0
        loss = ce_sum / count if count else 0.0
        logging.info("Iteration %d, Testing net (%s: %d labelled samples)", iteration, split,
                     int(count))
        logging.info("    Test net output: accuracy = %.4f", accuracy)
        logging.info("    Test net output: loss = %.6g", loss)
        metrics["%s/accuracy" % prefix] = accuracy
        metrics["%s/loss" % prefix] = loss
    with writer.as_default():
        for tag, value in metrics.items():
            write_scalar(tag, value, iteration)
        for prefix, column, targets, noisy, predictions, ntype_probs in views:
            if not targets:
                continue
            classes = datasets.NUM_NOISE_TYPES if column == 2 else num_classes
            summaries.write_confusion(prefix, np.concatenate(targets),
                                      np.concatenate(predictions), classes, iteration)
            probs = np.concatenate(ntype_probs)
            if probs.shape[1]:
                summaries.write_noise_type_posterior(prefix, probs, np.concatenate(noisy),
                                                     num_classes, iteration)
    writer.flush()
    return metrics


def run_stage(cfg, strategy=None):
    """Trains one stage to its max_iter, resuming from train_dir's latest checkpoint.

    Args:
      cfg: a StageConfig with resolved settings (stages.resolve_settings).
      strategy: a tf.distribute strategy (make_strategy); None = the default (one device).

    Returns:
      The final test metrics: dict tag ("test/accuracy", "test/loss", and on Clothing1M
      "val/accuracy", "val/loss") → float; None when SIGTERM stopped the run (after a
      checkpoint at the current iteration).

    Raises:
      InputError: bad data directory, train_dir, model directories or batch size.
      NonFiniteLossError: the loss became NaN or infinite.
    """
    settings = cfg.settings
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    batch_size = settings["batch_size"]
    check_flag(batch_size % replicas == 0, "batch_size",
               "%d is not divisible by the %d replicas (the batch size is global)"
               % (batch_size, replicas))
    metadata = datasets.read_metadata(cfg.data_dir)
    if metadata["dataset"] != cfg.dataset:
        raise InputError("holds prepared %s data, not %s" % (metadata["dataset"], cfg.dataset),
                         path=cfg.data_dir, field="--data_dir")
    num_classes = int(metadata["num_classes"])
    image_size = int(metadata["image_size"])
    kind = stages.STAGE_NET[cfg.stage]
    info = {"dataset": cfg.dataset, "stage": cfg.stage, "net": kind,
            "num_classes": num_classes, "image_size": image_size}
    _check_train_dir(cfg, info)
    _log_settings(cfg, num_classes, image_size)
    chief = is_chief(strategy)
    out_dir = output_dir(cfg.train_dir, strategy)

    with strategy.scope():
        keras.utils.set_random_seed(cfg.seed)
        model = stages.build_net(cfg.dataset, kind, num_classes, image_size)
        variables = model.trainable_variables
        solver = solver_lib.CaffeSGD(
            base_lr=settings["base_lr"], momentum=settings["momentum"],
            weight_decay=settings["weight_decay"], gamma=settings["gamma"],
            stepsize=settings["stepsize"], bias_lr_mult=settings["bias_lr_mult"],
            bias_decay_mult=settings["bias_decay_mult"])
        solver.build(variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=solver)
    manager = tf.train.CheckpointManager(checkpoint, out_dir,
                                         max_to_keep=MAX_CHECKPOINTS_TO_KEEP,
                                         checkpoint_name=stages.CHECKPOINT_PREFIX)
    resumed = bool(manager.latest_checkpoint)
    if resumed:
        _restore_training_state(checkpoint, manager.latest_checkpoint, "train_dir")
        logging.info("Resuming from %s", manager.latest_checkpoint)
    elif cfg.stage == "joint_stage2":
        _restore_stage1(cfg, checkpoint, num_classes)
    else:
        stages.initialize_stage(cfg.stage, cfg.dataset, model, num_classes, image_size,
                                clean_model_dir=cfg.clean_model_dir,
                                ntype_model_dir=cfg.ntype_model_dir,
                                caffemodel_weights=cfg.caffemodel_weights, log=logging.info)
    stages.write_stage_info(out_dir, info)

    step = int(solver.iterations.numpy())
    max_iter = settings["max_iter"]
    final = stages.read_final(out_dir)
    if final and final.get("iteration") == step and step >= max_iter and final.get("metrics"):
        logging.info("Stage %s already finished at iteration %d (%s)", cfg.stage, step,
                     os.path.join(out_dir, stages.FINAL_FILE))
        return final["metrics"]
    stages.remove_final(out_dir)

    # Nets, loss and the compiled steps.
    if kind == "joint":
        matrix_c = datasets.load_matrix_c(cfg.data_dir, num_classes)
        noisy_label_loss = layers.NoisyLabelLoss(matrix_c,
                                                 update_noise_lr=settings["update_noise_lr"])
        eval_net, ntype_net = model.clean_net, model.ntype_net
    else:
        matrix_c = None
        noisy_label_loss = None
        eval_net = model
        ntype_net = model if kind == "ntype" else None

    def forward(images, training):
        if kind == "joint":
            return model(images, training=training)
        logits = model(images, training=training)
        return (logits, None) if kind == "clean" else (None, logits)

    def replica_step(images, labels):
        """One replica's share of the update on its contiguous slice of the global batch.

        The loss layers divide by the batch they see (Caffe's M): on a replica that is its
        slice of m = M / R samples, so each replica's loss is Σ_slice / m, a mean over its
        own slice, and CaffeSGD.apply_gradients averages the replicas' gradients:
        (1/R) Σ_r ∇(Σ_r / m) = ∇(Σ_batch) / M, the single-device gradient. The reported
        loss terms are the replicas' shares Σ_slice / M = (m / M) · local mean, summed.

        Returns:
          (loss share [], dict term → share [], correct [], labelled count [],
          finite float32 [] 1/0).
        """
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group
        local = batch_size // context.num_replicas_in_sync
        images = images[replica * local:(replica + 1) * local]
        labels = labels[replica * local:(replica + 1) * local]
        with tf.GradientTape() as tape:
            clean_logits, ntype_logits = forward(images, training=True)
            terms = loss_terms(cfg.stage, clean_logits, ntype_logits, labels, noisy_label_loss)
            loss = weighted_loss(terms, settings)
        grads = tape.gradient(loss, variables)
        # A variable no loss reaches still gets Caffe's weight decay.
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        finite = tf.reduce_all([tf.math.is_finite(loss)]
                               + [tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        solver.apply_gradients(zip(grads, variables))
        targets, branch = train_accuracy_target(cfg.stage, labels)
        correct, count = layers.masked_accuracy(
            targets, clean_logits if branch == "clean" else ntype_logits)
        share = float(local) / float(batch_size)
        return (loss * share, {name: value * share for name, value in terms.items()},
                correct, count, tf.cast(finite, tf.float32))

    @tf.function(reduce_retracing=True)
    def train_step(images, labels):
        loss, terms, correct, count, finite = strategy.run(replica_step, args=(images, labels))
        total = lambda value: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)  # noqa: E731
        return (total(loss), {name: total(value) for name, value in terms.items()},
                total(correct), total(count), total(finite) >= replicas)

    tests = []
    for prefix, split, column in test_splits(cfg.dataset, cfg.stage):
        test_data = datasets.make_dataset(cfg.dataset, cfg.data_dir, split,
                                          settings["test_batch_size"], training=False)
        eval_step = _make_eval_step(eval_net, column, image_size, ntype_net)
        tests.append((prefix, split, eval_step, test_data, column))

    train_data = datasets.make_dataset(cfg.dataset, cfg.data_dir, stages.TRAIN_SPLIT[cfg.stage],
                                       batch_size, training=True, seed=cfg.seed,
                                       start_iteration=step)
    train_iter = iter(train_data)
    logging.info("Training %s from iteration %d to %d on %s (seed %d, %d replica(s))",
                 cfg.stage, step, max_iter, stages.TRAIN_SPLIT[cfg.stage], cfg.seed, replicas)

    writer = tf.summary.create_file_writer(out_dir) if chief else tf.summary.create_noop_writer()
    if matrix_c is not None and not resumed:
        with writer.as_default():
            summaries.write_matrix_c(matrix_c, step)
    test_interval = settings["test_interval"]
    display = settings["display"]
    snapshot_interval = settings["snapshot_interval"]
    last_saved = manager.latest_checkpoint
    window = {"loss": 0.0, "correct": 0.0, "count": 0.0, "steps": 0, "start": time.time()}
    window.update({name: 0.0 for name in LOSS_TERMS})
    metrics = {}
    with TerminationFlag() as termination:
        while step < max_iter:
            if step % test_interval == 0:
                test_start = time.time()
                metrics = _evaluate(tests, step, writer, num_classes)
                window["start"] += time.time() - test_start  # iter/s counts training only
            lr = float(solver.learning_rate(step))
            images, labels = next(train_iter)
            loss, terms, correct, count, finite = train_step(images, labels)
            loss = float(loss)
            if not bool(finite):
                raise NonFiniteLossError(
                    "non-finite loss or gradient (loss = %s) at iteration %d; nothing from it "
                    "was saved; last good checkpoint: %s" % (loss, step, last_saved or "none"))
            window["loss"] += loss
            window["correct"] += float(correct)
            window["count"] += float(count)
            window["steps"] += 1
            for name, value in terms.items():
                window[name] += float(value)
            # Caffe displays the iteration just run when its index is a multiple of display.
            if step % display == 0 or step == max_iter - 1:
                _log_train_window(step, lr, window, terms.keys(), settings, writer)
            step += 1
            if step % snapshot_interval == 0 or step == max_iter:
                last_saved = manager.save(checkpoint_number=step)
                logging.info("Snapshotting to %s", last_saved)
            if termination.requested and step < max_iter:
                if last_saved is None or stages.checkpoint_iteration(last_saved) != step:
                    last_saved = manager.save(checkpoint_number=step)
                logging.info("SIGTERM: snapshot %s at iteration %d; stopping.", last_saved, step)
                writer.close()
                return None

    if last_saved is None or stages.checkpoint_iteration(last_saved) != step:
        last_saved = manager.save(checkpoint_number=step)
        logging.info("Snapshotting to %s", last_saved)
    metrics = _evaluate(tests, step, writer, num_classes)
    writer.close()
    stages.write_final(out_dir, last_saved, step, metrics)
    logging.info("Optimization done: stage %s, iteration %d, %s", cfg.stage, step,
                 ", ".join("%s = %.4f" % item for item in sorted(metrics.items())))
    return metrics


def _log_train_window(iteration, lr, window, term_names, settings, writer):
    """Logs the means over the display window, Caffe-style, and writes train/ summaries.

    Args:
      iteration: the index of the iteration just run (0-based, as Caffe's log counts).
      lr: the learning rate that iteration used.
      window: running sums since the last display ("loss", "correct", "count", "steps",
        one entry per loss term, "start" time); reset here.
    """
    steps = max(window["steps"], 1)
    elapsed = time.time() - window["start"]
    loss = window["loss"] / steps
    accuracy = window["correct"] / window["count"] if window["count"] else 0.0
    logging.info("Iteration %d (%.3g iter/s), loss = %.6g", iteration,
                 steps / max(elapsed, 1e-9), loss)
    summaries = {"train/loss": loss, "train/lr": lr, "train/accuracy": accuracy}
    for name in term_names:
        value = window[name] / steps
        weight = settings[TERM_WEIGHT[name]]
        logging.info("    Train net output: %s = %.6g (* %g = %.6g loss)", name, value, weight,
                     weight * value)
        summaries["train/%s" % name] = value
    logging.info("    Train net output: accuracy = %.4f", accuracy)
    logging.info("Iteration %d, lr = %g", iteration, lr)
    with writer.as_default():
        for tag, value in summaries.items():
            write_scalar(tag, value, iteration)
    for key in list(window):
        window[key] = 0.0 if key != "steps" else 0
    window["start"] = time.time()


# ---------------------------------------------------------------------------------------
# Every stage.


# In --stage=all, these overrides concern the joint stages only (the single-net stages
# train one cross-entropy of weight 1).
JOINT_ONLY_SETTINGS = ("update_noise_lr", "clean_loss_weight", "ntype_loss_weight",
                       "noisy_loss_weight")


def run_all(dataset, data_dir, train_dir, overrides, seed=0, caffemodel_weights=None,
            strategy=None):
    """Runs every stage of the dataset's protocol in train_dir/STAGE; prints the table.

    Returns:
      `(metrics_by_stage, table)`; `(metrics so far, None)` when SIGTERM stopped a stage.
    """
    pipeline = stages.PIPELINES[dataset]
    configs = []
    for stage in pipeline:
        stage_overrides = dict(overrides)
        if stages.STAGE_NET[stage] != "joint":
            for name in JOINT_ONLY_SETTINGS:
                stage_overrides.pop(name, None)
        settings = stages.resolve_settings(dataset, stage, stage_overrides)
        configs.append(StageConfig(
            dataset=dataset, stage=stage, data_dir=data_dir,
            train_dir=os.path.join(train_dir, stage), settings=settings, seed=seed,
            clean_model_dir=os.path.join(train_dir, "clean"),
            ntype_model_dir=os.path.join(train_dir, "ntype"),
            init_dir=os.path.join(train_dir, "joint"),
            caffemodel_weights=caffemodel_weights if stage == "clean" else None))
    results = {}
    for cfg in configs:
        metrics = run_stage(cfg, strategy)
        if metrics is None:
            return results, None
        results[cfg.stage] = metrics
    table = stages.format_results_table(dataset, results)
    if strategy is None or is_chief(strategy):
        with atomic_open(os.path.join(train_dir, "results.txt")) as f:
            f.write(table + "\n")
    return results, table


def main(argv):
    if len(argv) > 1:
        raise InputError("unexpected arguments: %s" % " ".join(argv[1:]))
    check_flag(FLAGS.num_cpu_replicas >= 0, "num_cpu_replicas", "must be 0 or more")
    split_cpu(FLAGS.num_cpu_replicas)  # before TensorFlow initialises its devices
    check_flag(FLAGS.dataset in stages.DATASETS, "dataset",
               "expected one of %s, got %r" % (", ".join(stages.DATASETS), FLAGS.dataset))
    check_flag(FLAGS.stage in stages.STAGES + ("all",), "stage",
               "expected one of %s, got %r" % (", ".join(stages.STAGES + ("all",)), FLAGS.stage))
    check_flag(FLAGS.data_dir, "data_dir", "required: the prepared data directory")
    if FLAGS.dataset == "digits" and not os.path.exists(os.path.join(FLAGS.data_dir, "metadata.json")):
        # The demo runs from one command: the digits ship with scikit-learn, so the data
        # directory is prepared here when it holds no prepared data yet.
        check_flag(0.0 <= FLAGS.noise_level <= 1.0, "noise_level", "must be in [0, 1]")
        from noise_model.digits import prepare_digits
        logging.info("Preparing the digits data in %s (noise level %g).", FLAGS.data_dir, FLAGS.noise_level)
        prepare_digits(FLAGS.data_dir, noise_level=FLAGS.noise_level, seed=FLAGS.seed)
    check_flag(os.path.isdir(FLAGS.data_dir), "data_dir",
               "not a directory: %s" % FLAGS.data_dir)
    check_flag(FLAGS.train_dir, "train_dir", "required: where this stage writes checkpoints")
    check_flag(FLAGS.seed >= 0, "seed", "must be >= 0")
    if FLAGS.caffemodel_weights:
        check_flag(os.path.isfile(FLAGS.caffemodel_weights), "caffemodel_weights",
                   "file not found: %s" % FLAGS.caffemodel_weights)
    overrides = {name: getattr(FLAGS, name) for name in stages.SETTING_NAMES}
    strategy = make_strategy(FLAGS.distribution)
    if FLAGS.stage == "all":
        _, table = run_all(FLAGS.dataset, FLAGS.data_dir, FLAGS.train_dir, overrides,
                           seed=FLAGS.seed, caffemodel_weights=FLAGS.caffemodel_weights,
                           strategy=strategy)
        if table is not None:
            print(table)
            sys.stdout.flush()
        return 0
    stages.check_stage(FLAGS.dataset, FLAGS.stage)
    cfg = StageConfig(
        dataset=FLAGS.dataset, stage=FLAGS.stage, data_dir=FLAGS.data_dir,
        train_dir=FLAGS.train_dir,
        settings=stages.resolve_settings(FLAGS.dataset, FLAGS.stage, overrides),
        seed=FLAGS.seed, clean_model_dir=FLAGS.clean_model_dir,
        ntype_model_dir=FLAGS.ntype_model_dir, init_dir=FLAGS.init_dir,
        caffemodel_weights=FLAGS.caffemodel_weights)
    run_stage(cfg, strategy)
    return 0


def run():
    """Console entry point (`noise-model-train`)."""
    define_flags()
    app.run(cli_main(main))


if __name__ == "__main__":
    run()
