"""A stage's train_dir files, and a new stage's start from earlier stages' directories.

A stage's train_dir holds (besides what noisylabels.run_directory.RunDirectory keeps there: the
checkpoints `ckpt-ITERATION.*`, `run.json`, `run.lock`):
- `stage.json`: what was trained there (dataset, stage, net, num_classes, image_size); a
  train_dir belongs to one stage;
- `final.json`, once the stage reached its max_iter and was tested: the final checkpoint's
  name, its iteration and the final test metrics.

A new stage starts from the weights of earlier stages as the original copy_params.py did:
copied layer by layer where names and shapes match (Caffe's copy-by-name,
models.copy_matching_weights). `find_checkpoint`, `load_stage_net` and `initialize_stage`
read an earlier stage's train_dir (the checkpoint final.json names, else the latest one).
"""

import json
import os
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from noise_model.model import models
from noisylabels.errors import InputError
from noisylabels.fileio import atomic_open
from noisylabels.state_files import read_json_state

STAGE_INFO_FILE = "stage.json"
FINAL_FILE = "final.json"
CHECKPOINT_PREFIX = "ckpt"
_STAGE_INFO_KEYS = ("dataset", "stage", "net", "num_classes")


# -- stage.json and final.json -------------------------------------------------------------


def write_stage_info(train_dir: str, info: dict) -> None:
    """Writes `train_dir/stage.json` (dataset, stage, net, num_classes, image_size)."""
    os.makedirs(train_dir, exist_ok=True)
    with atomic_open(os.path.join(train_dir, STAGE_INFO_FILE)) as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")


def read_stage_info(model_dir: str, flag: str = "train_dir") -> Optional[dict]:
    """Reads `model_dir/stage.json`; None when `model_dir` holds no stage run yet.

    Raises:
      InputError: naming `--flag`, when the file exists but is not a stage description.
    """
    path = os.path.join(model_dir, STAGE_INFO_FILE)
    if not os.path.exists(path):
        return None
    info = read_json_state(path, "delete it only if this directory holds no stage run you need, or use a new "
                                 "directory", field="--%s" % flag)
    if any(key not in info for key in _STAGE_INFO_KEYS):
        raise InputError("stage description lacks one of %s" % ", ".join(_STAGE_INFO_KEYS), path=path,
                         field="--%s" % flag)
    return info


def check_stage_dir(train_dir: str, info: dict) -> None:
    """Refuses a train_dir that holds another data set's, stage's or class count's run."""
    existing = read_stage_info(train_dir)
    if existing is not None and (existing["dataset"] != info["dataset"] or existing["stage"] != info["stage"]
                                 or int(existing["num_classes"]) != info["num_classes"]):
        raise InputError("holds a %s run of stage %s; use a new --train_dir for stage %s of %s"
                         % (existing["dataset"], existing["stage"], info["stage"], info["dataset"]),
                         path=train_dir, field="--train_dir")


def read_final(model_dir: str) -> Optional[dict]:
    """`model_dir/final.json` as a dict (checkpoint, iteration, metrics), or None."""
    path = os.path.join(model_dir, FINAL_FILE)
    if not os.path.exists(path):
        return None
    return read_json_state(path, "delete it: the stage then resumes from its last checkpoint and is tested again")


def write_final(train_dir: str, checkpoint_path: str, iteration: int, metrics: Dict[str, float]) -> None:
    """Writes the `final.json` marker: the stage reached its max_iter and was tested."""
    with atomic_open(os.path.join(train_dir, FINAL_FILE)) as f:
        json.dump({"checkpoint": os.path.basename(checkpoint_path), "iteration": int(iteration),
                   "metrics": {k: float(v) for k, v in metrics.items()}}, f, indent=2, sort_keys=True)
        f.write("\n")


def remove_final(train_dir: str) -> None:
    """Removes the `final.json` marker (a finished stage is being trained further).

    Called under the run directory's lock, after `read_final` read it as this stage's
    marker (a damaged one is refused there, so it is never removed unread)."""
    path = os.path.join(train_dir, FINAL_FILE)
    if os.path.exists(path):
        os.remove(path)


# -- checkpoints of earlier stages ---------------------------------------------------------


def checkpoint_iteration(checkpoint_path: str) -> int:
    """The iteration a checkpoint was saved at (the suffix of `ckpt-N`)."""
    return int(checkpoint_path.rsplit("-", 1)[-1])


def find_checkpoint(model_dir: str, flag: str = "train_dir") -> Tuple[str, int, bool]:
    """The checkpoint a later stage starts from.

    Returns:
      `(path, iteration, finished)`: the checkpoint final.json names when it exists
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
        raise InputError("holds no checkpoint: train that stage first (or point the flag at its --train_dir)",
                         path=model_dir, field="--%s" % flag)
    return latest, checkpoint_iteration(latest), False


def restore_model(model: keras.Model, checkpoint_path: str, flag: str = "train_dir") -> None:
    """Restores only a model's weights from a stage checkpoint (saved as `model=`)."""
    status = tf.train.Checkpoint(model=model).restore(checkpoint_path)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise InputError("checkpoint does not fit the model (%s)" % str(err).splitlines()[0],
                         path=checkpoint_path, field="--%s" % flag) from None
    status.expect_partial()


def load_stage_net(model_dir: str, want: str, dataset: str, num_classes: int, image_size: int,
                   flag: str) -> Tuple[keras.Model, str, bool]:
    """Builds a net of kind `want` ("clean" or "ntype") and loads it from a stage's train_dir.

    A joint run's train_dir also serves: its clean (or noise-type) branch is returned.

    Returns:
      `(net, checkpoint_path, finished)`.

    Raises:
      InputError: naming `--flag`, when the directory holds no stage run of this data set
        with such a net, or no checkpoint.
    """
    info = read_stage_info(model_dir, flag)
    where = dict(path=model_dir, field="--%s" % flag)
    if info is None:
        raise InputError("holds no stage run (no %s): train that stage first" % STAGE_INFO_FILE, **where)
    if info["dataset"] != dataset:
        raise InputError("holds a %s run, not %s" % (info["dataset"], dataset), **where)
    if int(info["num_classes"]) != num_classes:
        raise InputError("holds a run with %s classes, the data has %d" % (info["num_classes"], num_classes),
                         **where)
    if info["net"] not in (want, "joint"):
        raise InputError("holds a %s stage (a %s net); expected a %s net" % (info["stage"], info["net"], want),
                         **where)
    path, _, finished = find_checkpoint(model_dir, flag)
    model = models.build_stage_net(dataset, info["net"], num_classes, image_size)
    restore_model(model, path, flag)
    if info["net"] == "joint":
        model = model.clean_net if want == "clean" else model.ntype_net
    return model, path, finished


def load_pretrained_weights(model: keras.Model, weights_path: str) -> List[str]:
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
    loaded = [layer.name for layer in model.layers
              if layer.get_weights() and any(not np.array_equal(a, b)
                                             for a, b in zip(layer.get_weights(), before[layer.name]))]
    if not loaded:
        raise InputError("no layer of %s matches the file's layers (names and shapes)" % type(model).__name__,
                         path=weights_path, field="--caffemodel_weights")
    return loaded


# -- a new stage's start ------------------------------------------------------------------


def _require(value: Optional[str], stage: str, flag: str) -> str:
    if not value:
        raise InputError("stage %s starts from an earlier stage: give its train_dir" % stage, field="--%s" % flag)
    return value


def _copy_from(model_dir: str, want: str, target: keras.Model, layer_names, flag: str, dataset: str,
               num_classes: int, image_size: int, log: Callable[[str], None]) -> List[str]:
    """Copies the matching layers of an earlier stage's `want` net into `target`."""
    source, path, finished = load_stage_net(model_dir, want, dataset, num_classes, image_size, flag)
    if not finished:
        log("warning: %s has not finished (no %s); using its latest checkpoint %s" % (model_dir, FINAL_FILE, path))
    names = models.copy_matching_weights(source, target, layer_names=layer_names)
    log("%s net: copied layers [%s] from %s" % (want, ", ".join(names), path))
    if not names:
        raise InputError("no layer could be copied from this checkpoint", path=path, field="--%s" % flag)
    return names


def _load_caffemodel(model: keras.Model, weights_path: str, net: str, log: Callable[[str], None]) -> List[str]:
    names = load_pretrained_weights(model, weights_path)
    log("%s net: loaded layers [%s] from %s" % (net, ", ".join(names), weights_path))
    return names


def initialize_stage(stage: str, dataset: str, model: keras.Model, num_classes: int, image_size: int,
                     clean_model_dir: Optional[str] = None, ntype_model_dir: Optional[str] = None,
                     caffemodel_weights: Optional[str] = None,
                     log: Callable[[str], None] = print) -> Dict[str, List[str]]:
    """Initialises a fresh stage's model from earlier stages (the original copy_params.py).

    - clean: from `caffemodel_weights` if given, else the models' random initialisation.
    - noisy_gt: every matching layer of the clean stage's net (`clean_model_dir`).
    - ntype: `caffemodel_weights` if given, then from the clean stage's net: its conv
      layers on CIFAR-10 / digits ("start from 1's conv layers"), every layer whose name
      and shapes match on Clothing1M ("from 1").
    - joint: clean branch from `clean_model_dir`, noise-type branch from `ntype_model_dir`,
      every matching layer.
    (joint_stage2 continues stage 1's whole training state instead: see stage_runner.)

    Args:
      model: the stage's built model (models.build_stage_net of protocol.STAGE_NET[stage]).
      log: takes one message string.

    Returns:
      dict: branch ("clean" / "ntype") → list of copied layer names.

    Raises:
      InputError: a required model directory flag is missing or unusable.
    """
    source = dict(dataset=dataset, num_classes=num_classes, image_size=image_size, log=log)
    if stage == "clean":
        if caffemodel_weights:
            return {"clean": _load_caffemodel(model, caffemodel_weights, "clean", log)}
        log("clean net: random initialisation")
        return {}
    if stage == "noisy_gt":
        clean_dir = _require(clean_model_dir, stage, "clean_model_dir")
        return {"clean": _copy_from(clean_dir, "clean", model, None, "clean_model_dir", **source)}
    if stage == "ntype":
        clean_dir = _require(clean_model_dir, stage, "clean_model_dir")
        if caffemodel_weights:
            _load_caffemodel(model, caffemodel_weights, "ntype", log)
        layer_names = None if dataset == "clothing1m" else models.conv_layer_names(model)
        return {"clean": _copy_from(clean_dir, "clean", model, layer_names, "clean_model_dir", **source)}
    if stage == "joint":
        clean_dir = _require(clean_model_dir, stage, "clean_model_dir")
        ntype_dir = _require(ntype_model_dir, stage, "ntype_model_dir")
        return {"clean": _copy_from(clean_dir, "clean", model.clean_net, None, "clean_model_dir", **source),
                "ntype": _copy_from(ntype_dir, "ntype", model.ntype_net, None, "ntype_model_dir", **source)}
    raise ValueError("stage %r is not initialised by copying weights" % stage)
