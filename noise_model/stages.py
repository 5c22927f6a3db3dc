"""The training stages of Xiao et al.'s protocol: default solver settings and initialisation.

Two jobs, both used by `noise_model/train.py`:

1. The table of per-dataset, per-stage defaults (SPEC.md 2.3 for CIFAR-10, 2.4 for
   Clothing1M, and our scaled-down schedule for the scikit-learn digits demo):
   `default_settings(dataset, stage)` and `resolve_settings(dataset, stage, overrides)`.
2. Stage initialisation as the original `copy_params.py` did it: a stage starts from the
   weights of earlier stages, copied layer by layer where names and shapes match
   (Caffe's copy-by-name, `models.copy_matching_weights`). `read_stage_info`,
   `find_checkpoint`, `load_stage_net` and `initialize_stage` read a finished stage's
   train_dir and copy its weights into the new stage's nets.

A stage's train_dir holds `stage.json` (what was trained there), the checkpoints of a
`tf.train.CheckpointManager` (prefix `ckpt`, numbered by iteration) and, once the stage
has reached its max_iter and been tested, `final.json` (the final checkpoint and its test
metrics).
"""

import json
import os
import warnings

import numpy as np
import tensorflow as tf

from noise_model import models
from util.errors import InputError
from util.fileio import atomic_open

DATASETS = ("cifar10", "clothing1m", "digits")
STAGES = ("clean", "noisy_gt", "ntype", "joint", "joint_stage2")

# The stages each dataset's protocol defines, in the order --stage=all runs them.
PIPELINES = {
    "cifar10": ("clean", "noisy_gt", "ntype", "joint"),
    "digits": ("clean", "noisy_gt", "ntype", "joint"),
    "clothing1m": ("clean", "ntype", "joint", "joint_stage2"),
}

# Which nets a stage trains: "clean" (the clean-label net alone), "ntype" (the noise-type
# net alone) or "joint" (both, joined by the noisy-label loss).
STAGE_NET = {"clean": "clean", "noisy_gt": "clean", "ntype": "ntype",
             "joint": "joint", "joint_stage2": "joint"}

# The make_dataset split each stage trains on.
TRAIN_SPLIT = {"clean": "clean_train", "noisy_gt": "mixed_train", "ntype": "ntype_train",
               "joint": "mixed_train", "joint_stage2": "mixed_train"}

# The names of every solver setting, in the order they are logged.
SETTING_NAMES = (
    "base_lr", "stepsize", "max_iter", "gamma", "momentum", "weight_decay", "bias_lr_mult",
    "bias_decay_mult", "batch_size", "test_batch_size", "test_interval", "snapshot_interval",
    "display", "update_noise_lr", "clean_loss_weight", "ntype_loss_weight",
    "noisy_loss_weight")

# Settings shared by every stage of a dataset.
#  - cifar10: SPEC.md 2.3 (Caffe's cifar10_quick solver: display 100). bias_decay_mult 1 is
#    our reading: cifar10_quick's prototxt sets no decay_mult, and Caffe's default is 1.
#  - clothing1m: SPEC.md 2.4 (bvlc_reference_caffenet solver: display 20).
#    bias_decay_mult 0 is our reading: bvlc_reference_caffenet gives biases decay_mult 0.
#    test_interval 1000 is our choice (bvlc_reference_caffenet's value; SPEC.md gives none).
#  - digits: the CIFAR-10 solver with shorter intervals (our choice, see _SCHEDULES).
# snapshot_interval is our choice everywhere (SPEC.md gives none); a final snapshot is
# always written at max_iter, as Caffe's snapshot_after_train does.
_COMMON = {
    "cifar10": dict(gamma=0.1, momentum=0.9, weight_decay=0.004, bias_lr_mult=2.0,
                    bias_decay_mult=1.0, batch_size=100, test_batch_size=100,
                    test_interval=500, snapshot_interval=1000, display=100),
    "digits": dict(gamma=0.1, momentum=0.9, weight_decay=0.004, bias_lr_mult=2.0,
                   bias_decay_mult=1.0, batch_size=100, test_batch_size=100,
                   test_interval=250, snapshot_interval=500, display=50),
    "clothing1m": dict(gamma=0.1, momentum=0.9, weight_decay=0.0005, bias_lr_mult=2.0,
                       bias_decay_mult=0.0, batch_size=128, test_batch_size=100,
                       test_interval=1000, snapshot_interval=5000, display=20),
}

# Learning-rate schedules ("step" policy: base_lr · gamma^⌊iter / stepsize⌋).
# digits (our choice): the CIFAR-10 learning rates; iteration counts scaled to the digits
# data (about 290 clean training images, 1437 mixed ones) so that --stage=all runs in
# about 5.5 minutes on 2 CPU cores (measured); the lr step at 5/6 of clean and 2/3 of the
# other stages, close to the CIFAR-10 schedule's 4/5 and 2/3.
_SCHEDULES = {
    ("cifar10", "clean"): dict(base_lr=0.001, stepsize=4000, max_iter=5000),
    ("cifar10", "noisy_gt"): dict(base_lr=0.001, stepsize=4000, max_iter=6000),
    ("cifar10", "ntype"): dict(base_lr=0.0001, stepsize=1000, max_iter=1500),
    ("cifar10", "joint"): dict(base_lr=0.001, stepsize=4000, max_iter=6000),
    ("digits", "clean"): dict(base_lr=0.001, stepsize=500, max_iter=600),
    ("digits", "noisy_gt"): dict(base_lr=0.001, stepsize=600, max_iter=900),
    ("digits", "ntype"): dict(base_lr=0.0001, stepsize=300, max_iter=450),
    ("digits", "joint"): dict(base_lr=0.001, stepsize=600, max_iter=900),
    ("clothing1m", "clean"): dict(base_lr=0.001, stepsize=10000, max_iter=15000),
    ("clothing1m", "ntype"): dict(base_lr=0.001, stepsize=3000, max_iter=5000),
    ("clothing1m", "joint"): dict(base_lr=0.001, stepsize=50000, max_iter=100000),
    # Stage 2 continues stage 1's solver state (iteration 100000, same lr policy).
    ("clothing1m", "joint_stage2"): dict(base_lr=0.001, stepsize=50000, max_iter=160000),
}

# Loss weights (clean CE, noise-type CE, noisy-label loss) and update_noise_lr.
# Single-net stages train one cross-entropy with weight 1; update_noise_lr has no effect
# there (it is a parameter of the noisy-label loss).
_SINGLE_NET_LOSSES = {
    "clean": dict(clean_loss_weight=1.0, ntype_loss_weight=0.0, noisy_loss_weight=0.0,
                  update_noise_lr=1.0),
    "noisy_gt": dict(clean_loss_weight=1.0, ntype_loss_weight=0.0, noisy_loss_weight=0.0,
                     update_noise_lr=1.0),
    "ntype": dict(clean_loss_weight=0.0, ntype_loss_weight=1.0, noisy_loss_weight=0.0,
                  update_noise_lr=1.0),
}
_JOINT_LOSSES = {
    # SPEC.md 2.3 step 4: every loss weight 1, update_noise_lr 1.
    ("cifar10", "joint"): dict(clean_loss_weight=1.0, ntype_loss_weight=1.0,
                               noisy_loss_weight=1.0, update_noise_lr=1.0),
    ("digits", "joint"): dict(clean_loss_weight=1.0, ntype_loss_weight=1.0,
                              noisy_loss_weight=1.0, update_noise_lr=1.0),
    # SPEC.md 2.4 stage 1: clean CE 0.1 + noisy-label loss 1, noise-type net frozen.
    ("clothing1m", "joint"): dict(clean_loss_weight=0.1, ntype_loss_weight=0.0,
                                  noisy_loss_weight=1.0, update_noise_lr=0.0),
    # SPEC.md 2.4 stage 2: clean CE 1 + noise-type CE 0.1 + noisy-label loss 1.
    ("clothing1m", "joint_stage2"): dict(clean_loss_weight=1.0, ntype_loss_weight=0.1,
                                         noisy_loss_weight=1.0, update_noise_lr=0.1),
}

# Published results (SPEC.md Part 3) for the --stage=all table: (stage, metric key, label,
# value). The metric key names a summary tag of train.py's tests.
PUBLISHED = {
    "cifar10": [
        ("clean", "test/accuracy", "clean set only: test accuracy", 0.620),
        ("noisy_gt", "test/accuracy", "noisy labels as truth: test accuracy", 0.658),
        ("ntype", "test/accuracy", "noise-type net: noise-type accuracy", 0.689),
        ("joint", "test/accuracy", "joint model: test accuracy", 0.689),
    ],
    "clothing1m": [
        ("clean", "val/accuracy", "clean only: validation accuracy", 0.724),
        ("ntype", "test/accuracy", "noise-type net: noise-type accuracy", 0.641),
        ("joint", "val/accuracy", "joint stage 1: validation accuracy", 0.755),
        ("joint_stage2", "val/accuracy", "joint stage 2: validation accuracy", 0.773),
    ],
}
PUBLISHED["digits"] = PUBLISHED["cifar10"]  # the demo is compared with the CIFAR-10 figures

STAGE_INFO_FILE = "stage.json"
FINAL_FILE = "final.json"
CHECKPOINT_PREFIX = "ckpt"


def check_stage(dataset, stage):
    """Raises InputError unless `stage` is part of `dataset`'s protocol."""
    if dataset not in DATASETS:
        raise InputError("unknown dataset %r; expected one of %s" % (dataset, ", ".join(DATASETS)),
                         field="--dataset")
    if stage not in PIPELINES[dataset]:
        raise InputError("stage %r is not part of the %s protocol (its stages: %s)"
                         % (stage, dataset, ", ".join(PIPELINES[dataset])), field="--stage")


def default_settings(dataset, stage):
    """The default solver settings of one stage (SPEC.md 2.3 / 2.4; digits: our schedule).

    Returns:
      dict with every name of SETTING_NAMES: floats for rates, multipliers and weights,
      ints for iteration counts, intervals and batch sizes.
    """
    check_stage(dataset, stage)
    settings = dict(_COMMON[dataset])
    settings.update(_SCHEDULES[(dataset, stage)])
    if STAGE_NET[stage] == "joint":
        settings.update(_JOINT_LOSSES[(dataset, stage)])
    else:
        settings.update(_SINGLE_NET_LOSSES[stage])
    return settings


_INT_SETTINGS = ("stepsize", "max_iter", "batch_size", "test_batch_size", "test_interval",
                 "snapshot_interval", "display")
_POSITIVE = ("base_lr", "stepsize", "batch_size", "test_batch_size", "test_interval",
             "snapshot_interval", "display")
_NON_NEGATIVE = ("max_iter", "gamma", "weight_decay", "bias_lr_mult", "bias_decay_mult",
                 "update_noise_lr", "clean_loss_weight", "ntype_loss_weight",
                 "noisy_loss_weight")


def resolve_settings(dataset, stage, overrides=None):
    """Defaults of `default_settings` with the non-None entries of `overrides` in place.

    Args:
      dataset, stage: as in `default_settings`.
      overrides: dict name → value or None (None keeps the default), e.g. the solver flags.

    Returns:
      The resolved settings dict.

    Raises:
      InputError: naming the flag, for an unknown name, a value out of range, or a loss
        weight given to a net the stage does not train.
    """
    settings = default_settings(dataset, stage)
    for name, value in (overrides or {}).items():
        if name not in settings:
            raise InputError("unknown solver setting", field="--%s" % name)
        if value is not None:
            settings[name] = int(value) if name in _INT_SETTINGS else float(value)
    for name in _POSITIVE:
        if not settings[name] > 0:
            raise InputError("must be positive, got %s" % settings[name], field="--%s" % name)
    for name in _NON_NEGATIVE:
        if not (settings[name] >= 0 and np.isfinite(settings[name])):
            raise InputError("must be a finite number >= 0, got %s" % settings[name],
                             field="--%s" % name)
    if not 0 <= settings["momentum"] < 1:
        raise InputError("must be in [0, 1), got %s" % settings["momentum"], field="--momentum")
    net = STAGE_NET[stage]
    unused = {"clean": ("ntype_loss_weight", "noisy_loss_weight"),
              "ntype": ("clean_loss_weight", "noisy_loss_weight"),
              "joint": ()}[net]
    for name in unused:
        if settings[name] != 0:
            raise InputError("stage %s trains no %s; this weight must be 0"
                             % (stage, "noise-type net" if name == "ntype_loss_weight"
                                else "clean-label net" if name == "clean_loss_weight"
                                else "joint model"), field="--%s" % name)
    if not any(settings[name] > 0 for name in
               ("clean_loss_weight", "ntype_loss_weight", "noisy_loss_weight")):
        raise InputError("every loss weight is 0: nothing to train", field="--stage")
    return settings


# ---------------------------------------------------------------------------------------
# Models and checkpoints of a stage.


def build_net(dataset, kind, num_classes, image_size):
    """Builds (creates the weights of) a stage's model.

    Args:
      dataset: "cifar10", "digits" or "clothing1m".
      kind: "clean" (models.build_clean_model), "ntype" (models.build_ntype_model) or
        "joint" (models.JointModel of the two).
      num_classes: L, the number of clean-label classes.
      image_size: the network input side (32 or 227).

    Returns:
      The Keras model, called once on zeros [1, image_size, image_size, 3].
    """
    if kind == "clean":
        model = models.build_clean_model(dataset, num_classes)
    elif kind == "ntype":
        model = models.build_ntype_model(dataset)
    elif kind == "joint":
        model = models.JointModel(models.build_clean_model(dataset, num_classes),
                                  models.build_ntype_model(dataset))
    else:
        raise ValueError("unknown net kind %r" % kind)
    model(tf.zeros([1, image_size, image_size, 3], tf.float32), training=False)
    return model


def write_stage_info(train_dir, info):
    """Writes `train_dir/stage.json` (dict with dataset, stage, net, num_classes, image_size)."""
    os.makedirs(train_dir, exist_ok=True)
    with atomic_open(os.path.join(train_dir, STAGE_INFO_FILE)) as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")


def read_stage_info(model_dir, flag="train_dir"):
    """Reads `model_dir/stage.json`; None when `model_dir` holds no stage run yet.

    Raises:
      InputError: the file exists but is not a readable stage description.
    """
    path = os.path.join(model_dir, STAGE_INFO_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError) as err:
        raise InputError("not a readable stage description (%s)" % err, path=path,
                         field="--%s" % flag) from None
    needed = ("dataset", "stage", "net", "num_classes")
    if not isinstance(info, dict) or any(key not in info for key in needed):
        raise InputError("stage description lacks one of %s" % ", ".join(needed), path=path,
                         field="--%s" % flag)
    return info


def read_final(model_dir):
    """`model_dir/final.json` as a dict (checkpoint, iteration, metrics), or None."""
    path = os.path.join(model_dir, FINAL_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_final(train_dir, checkpoint_path, iteration, metrics):
    """Writes the `final.json` marker: the stage reached its max_iter and was tested."""
    with atomic_open(os.path.join(train_dir, FINAL_FILE)) as f:
        json.dump({"checkpoint": os.path.basename(checkpoint_path), "iteration": int(iteration),
                   "metrics": {k: float(v) for k, v in metrics.items()}},
                  f, indent=2, sort_keys=True)
        f.write("\n")


def remove_final(train_dir):
    """Removes the `final.json` marker (a finished stage is being trained further)."""
    path = os.path.join(train_dir, FINAL_FILE)
    if os.path.exists(path):
        os.remove(path)


def checkpoint_iteration(checkpoint_path):
    """The iteration number a checkpoint was saved at (the suffix of `ckpt-N`)."""
    return int(checkpoint_path.rsplit("-", 1)[-1])


def find_checkpoint(model_dir, flag="train_dir"):
    """The checkpoint a later stage should start from.

    Returns:
      `(path, iteration, finished)`: the checkpoint named by `final.json` when it exists
      (finished True), else the latest checkpoint (finished False).

    Raises:
      InputError: naming `--flag`, when `model_dir` holds no checkpoint.
    """
    final = read_final(model_dir)
    if final and isinstance(final.get("checkpoint"), str):
        path = os.path.join(model_dir, final["checkpoint"])
        if tf.io.gfile.exists(path + ".index"):
            return path, checkpoint_iteration(path), True
    latest = tf.train.latest_checkpoint(model_dir)
    if latest is None:
        raise InputError("holds no checkpoint: train that stage first (or point the flag at "
                         "its --train_dir)", path=model_dir, field="--%s" % flag)
    return latest, checkpoint_iteration(latest), False


def restore_model(model, checkpoint_path, flag="train_dir"):
    """Restores only a model's weights from a stage checkpoint (saved as `model=`)."""
    status = tf.train.Checkpoint(model=model).restore(checkpoint_path)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise InputError("checkpoint does not fit the model (%s)" % str(err).splitlines()[0],
                         path=checkpoint_path, field="--%s" % flag) from None
    status.expect_partial()


def load_stage_net(model_dir, want, dataset, num_classes, image_size, flag):
    """Builds a net of kind `want` ("clean" or "ntype") and loads it from a stage's train_dir.

    A joint run's train_dir also serves: its clean (or noise-type) branch is returned.

    Returns:
      `(net, checkpoint_path, finished)`.

    Raises:
      InputError: naming `--flag`, when the directory holds no stage run of this dataset
        with such a net, or no checkpoint.
    """
    info = read_stage_info(model_dir, flag)
    if info is None:
        raise InputError("holds no stage run (no %s): train that stage first"
                         % STAGE_INFO_FILE, path=model_dir, field="--%s" % flag)
    if info["dataset"] != dataset:
        raise InputError("holds a %s run, not %s" % (info["dataset"], dataset),
                         path=model_dir, field="--%s" % flag)
    if int(info["num_classes"]) != num_classes:
        raise InputError("holds a run with %s classes, the data has %d"
                         % (info["num_classes"], num_classes), path=model_dir, field="--%s" % flag)
    if info["net"] not in (want, "joint"):
        raise InputError("holds a %s stage (a %s net); expected a %s net"
                         % (info["stage"], info["net"], want), path=model_dir, field="--%s" % flag)
    path, _, finished = find_checkpoint(model_dir, flag)
    model = build_net(dataset, info["net"], num_classes, image_size)
    restore_model(model, path, flag)
    if info["net"] == "joint":
        model = model.clean_net if want == "clean" else model.ntype_net
    return model, path, finished


def load_pretrained_weights(model, weights_path):
    """Loads a Keras weights file (e.g. from import_caffemodel) by layer name and shape.

    Layers whose name or weight shapes differ (e.g. a 1000-way ImageNet fc8 and our 14-way
    one) keep their own initial weights, as Caffe's copy-by-name does.

    Returns:
      The names of the layers whose weights were loaded.

    Raises:
      InputError: the file is missing or unreadable, or no layer matched.
    """
    if not os.path.exists(weights_path):
        raise InputError("file not found", path=weights_path, field="--caffemodel_weights")
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(weights_path, skip_mismatch=True)
    except Exception as err:  # Keras raises several types for unreadable files.
        raise InputError("not a loadable Keras weights file (%s)" % str(err).splitlines()[0],
                         path=weights_path, field="--caffemodel_weights") from None
    loaded = []
    for layer in model.layers:
        after = layer.get_weights()
        if after and any(not np.array_equal(a, b) for a, b in zip(after, before[layer.name])):
            loaded.append(layer.name)
    if not loaded:
        raise InputError("no layer of %s matches the file's layers (names and shapes)"
                         % type(model).__name__, path=weights_path, field="--caffemodel_weights")
    return loaded


def initialize_stage(stage, dataset, model, num_classes, image_size, clean_model_dir=None,
                     ntype_model_dir=None, caffemodel_weights=None, log=print):
    """Initialises a fresh stage's model from earlier stages (the original copy_params.py).

    - clean: from `caffemodel_weights` if given, else the models' random initialisation.
    - noisy_gt: every matching layer of the clean stage's net (`clean_model_dir`).
    - ntype: `caffemodel_weights` if given, then from the clean stage's net: its conv
      layers on CIFAR-10 / digits ("start from 1's conv layers"), every layer whose name
      and shapes match on Clothing1M ("from 1").
    - joint: clean branch from `clean_model_dir`, noise-type branch from `ntype_model_dir`,
      every matching layer.
    (joint_stage2 restores stage 1's whole training state instead: see train.py.)

    Args:
      model: the built model of the stage (`build_net(..., STAGE_NET[stage], ...)`).
      log: a function taking one message string.

    Returns:
      dict: branch ("clean" / "ntype") → list of copied layer names.

    Raises:
      InputError: a required model directory flag is missing or unusable.
    """
    copied = {}

    def require(value, flag):
        if not value:
            raise InputError("stage %s starts from an earlier stage: give its train_dir"
                             % stage, field="--%s" % flag)

    def copy_from(model_dir, want, target, layer_names, flag):
        source, path, finished = load_stage_net(model_dir, want, dataset, num_classes,
                                                image_size, flag)
        if not finished:
            log("warning: %s has not finished (no %s); using its latest checkpoint %s"
                % (model_dir, FINAL_FILE, path))
        names = models.copy_matching_weights(source, target, layer_names=layer_names)
        log("%s net: copied layers [%s] from %s" % (want, ", ".join(names), path))
        if not names:
            raise InputError("no layer could be copied from this checkpoint", path=path,
                             field="--%s" % flag)
        return names

    if stage == "clean":
        if caffemodel_weights:
            copied["clean"] = load_pretrained_weights(model, caffemodel_weights)
            log("clean net: loaded layers [%s] from %s"
                % (", ".join(copied["clean"]), caffemodel_weights))
        else:
            log("clean net: random initialisation")
    elif stage == "noisy_gt":
        require(clean_model_dir, "clean_model_dir")
        copied["clean"] = copy_from(clean_model_dir, "clean", model, None, "clean_model_dir")
    elif stage == "ntype":
        require(clean_model_dir, "clean_model_dir")
        if caffemodel_weights:
            names = load_pretrained_weights(model, caffemodel_weights)
            log("ntype net: loaded layers [%s] from %s" % (", ".join(names), caffemodel_weights))
        layer_names = None if dataset == "clothing1m" else models.conv_layer_names(model)
        copied["clean"] = copy_from(clean_model_dir, "clean", model, layer_names,
                                    "clean_model_dir")
    elif stage == "joint":
        require(clean_model_dir, "clean_model_dir")
        require(ntype_model_dir, "ntype_model_dir")
        copied["clean"] = copy_from(clean_model_dir, "clean", model.clean_net, None,
                                    "clean_model_dir")
        copied["ntype"] = copy_from(ntype_model_dir, "ntype", model.ntype_net, None,
                                    "ntype_model_dir")
    else:
        raise ValueError("stage %r is not initialised by copying weights" % stage)
    return copied


def format_results_table(dataset, metrics_by_stage):
    """The SPEC.md Part 3 table for this run: our figure beside the published one.

    Args:
      dataset: the dataset the stages were trained on.
      metrics_by_stage: dict stage → dict metric key → value (train.py's test results).

    Returns:
      The table as a multi-line string.
    """
    published_on = "Clothing1M" if dataset == "clothing1m" else "CIFAR-10"
    rows = [("run (%s)" % dataset, "ours", "published (%s)" % published_on)]
    for stage, key, label, value in PUBLISHED[dataset]:
        ours = metrics_by_stage.get(stage, {}).get(key)
        rows.append((label, "-" if ours is None else "%.3f" % ours, "%.3f" % value))
    width = max(len(row[0]) for row in rows)
    return "\n".join("%-*s  %6s  %s" % (width, a, b, c) for a, b, c in rows)
