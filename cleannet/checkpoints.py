"""CleanNet checkpoints: layout, model configuration, restore, and the inference file.

A checkpoint directory written by train.py (or util/import_tf1_checkpoint.py) holds
`tf.train.CheckpointManager` files `ckpt-STEP.index` / `ckpt-STEP.data-*` and the
`checkpoint` state file; the best model by validation accuracy is kept separately
under `best/` with the same layout. Each checkpoint stores, besides the weights and the
global step, the model configuration (cleannet.model_config.ModelConfig: img_dim,
num_ref, embed_norm) so that a checkpoint used with other settings is refused with a
clear message instead of giving meaningless similarities, and so that the tools need not
be told them again.

Every save of train.py (latest and best) also writes INFERENCE_FILE beside the checkpoint:
the inference path's weights, the model configuration, the step and the checkpoint's
name, in NumPy's `.npz` format (read with allow_pickle=False; each member is CRC-32
checked by zipfile), written atomically. `load_inference_model` reads it without
TensorFlow when it belongs to the directory's newest checkpoint; otherwise (a checkpoint
imported from TF1, or written before the file existed) TensorFlow restores the
checkpoint into the Keras model (loaded only then).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from absl import logging

from cleannet.model_config import FIELDS, ModelConfig, canonical_embed_norm, check_given
from noisylabels.errors import DamagedCheckpointError, InputError
from noisylabels.fileio import atomic_open

ConfigT = TypeVar("ConfigT")

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from cleannet.model import CleanNet
    from cleannet.numpy_model import NumpyCleanNet

__all__ = ["BEST_SUBDIR", "INFERENCE_FILE", "ModelConfig", "canonical_embed_norm", "make_checkpoint", "restore",
           "read_config", "load_trained_model", "load_inference_model", "write_inference_file",
           "read_model_config", "resolve_model_config"]

BEST_SUBDIR = "best"
INFERENCE_FILE = "inference_model.npz"
GLOBAL_STEP_KEY = "global_step/.ATTRIBUTES/VARIABLE_VALUE"
_CONFIG_KEY = "model_config/%s/.ATTRIBUTES/VARIABLE_VALUE"
_STEP_OF_INDEX = re.compile(r"-(\d+)\.index$")


def model_config(model: CleanNet) -> tf.train.Checkpoint:
    """A trackable holding the model's img_dim, num_ref and embed_norm as variables."""
    import tensorflow as tf

    config = tf.train.Checkpoint()
    config.img_dim = tf.Variable(model.img_dim, dtype=tf.int64, trainable=False)
    config.num_ref = tf.Variable(model.num_ref, dtype=tf.int64, trainable=False)
    config.embed_norm = tf.Variable(canonical_embed_norm(model.embed_norm), dtype=tf.string, trainable=False)
    return config


def make_checkpoint(model: CleanNet, global_step: tf.Variable,
                    optimizer: keras.optimizers.Optimizer | None = None, **extra: Any) -> tf.train.Checkpoint:
    """The checkpoint object: model, global_step, model_config, optimizer and extras."""
    import tensorflow as tf

    objects = dict(model=model, global_step=global_step, model_config=model_config(model), **extra)
    if optimizer is not None:
        objects["optimizer"] = optimizer
    return tf.train.Checkpoint(**objects)


def _tf_reader(checkpoint_path: str) -> Any:
    """TensorFlow's reader of a checkpoint; DamagedCheckpointError when it cannot be read."""
    from noisylabels.console import load_tensorflow
    from noisylabels.run_directory import DAMAGED_CHECKPOINT_ERRORS

    tf = load_tensorflow()
    try:
        return tf.train.load_checkpoint(checkpoint_path)
    except DAMAGED_CHECKPOINT_ERRORS as err:
        raise DamagedCheckpointError("unreadable checkpoint (%s)" % str(err).splitlines()[0],
                                     path=checkpoint_path) from None


def check_readable(checkpoint_path: str, reader: Any = None) -> None:
    """Reads every tensor of the checkpoint once (TensorFlow checks each one's CRC-32C);
    DamagedCheckpointError naming the checkpoint and the first unreadable tensor."""
    from noisylabels.run_directory import DAMAGED_CHECKPOINT_ERRORS

    reader = reader if reader is not None else _tf_reader(checkpoint_path)
    for key in sorted(reader.get_variable_to_shape_map()):
        try:
            reader.get_tensor(key)
        except DAMAGED_CHECKPOINT_ERRORS as err:
            reason = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]", "", str(err)).strip().splitlines()[0]
            raise DamagedCheckpointError("damaged checkpoint: tensor %s (%s)" % (key, reason),
                                         path=checkpoint_path) from None


def read_config(checkpoint_path: str, reader: Any = None) -> dict[str, int | str | None]:
    """(img_dim, num_ref, embed_norm) stored in a TensorFlow checkpoint; None for absent entries.

    reader: TensorFlow's reader of the checkpoint, when the caller has it open already.
    """
    reader = reader if reader is not None else _tf_reader(checkpoint_path)
    values = {}
    for name in FIELDS:
        key = _CONFIG_KEY % name
        value = reader.get_tensor(key) if reader.has_tensor(key) else None
        if hasattr(value, "item"):  # a 0-d array
            value = value.item()
        values[name] = value.decode() if isinstance(value, bytes) else (None if value is None else int(value))
    return values


def restore(checkpoint: tf.train.Checkpoint, checkpoint_path: str, img_dim: int | None, num_ref: int | None,
            embed_norm: str | None, partial: bool = False) -> Any:
    """Restores `checkpoint` (from make_checkpoint) from `checkpoint_path` after checking the config.

    Args:
      img_dim, num_ref, embed_norm: the values the caller uses (None: not checked).
      partial: accept a checkpoint lacking some objects (e.g. no optimizer slots).

    Returns:
      The restore status.
    """
    from noisylabels.run_directory import DAMAGED_CHECKPOINT_ERRORS

    check_given(read_config(checkpoint_path), dict(img_dim=img_dim, num_ref=num_ref, embed_norm=embed_norm),
                checkpoint_path)
    try:
        status = checkpoint.restore(checkpoint_path)
        status.expect_partial()  # no warnings at exit about objects of the file left unused
        if not partial:
            status.assert_existing_objects_matched()
    except AssertionError as err:
        raise InputError("the checkpoint does not fit this model (%s)" % str(err).splitlines()[0],
                         path=checkpoint_path) from None
    except DAMAGED_CHECKPOINT_ERRORS as err:
        raise DamagedCheckpointError("cannot restore the model from this damaged checkpoint (%s)"
                                     % str(err).splitlines()[0], path=checkpoint_path) from None
    return status


def require_checkpoint(checkpoint_dir: str) -> str:
    """The latest checkpoint in `checkpoint_dir` (TensorFlow's state file), or an InputError."""
    _require_dir(checkpoint_dir)
    from noisylabels.console import load_tensorflow

    path = load_tensorflow().train.latest_checkpoint(checkpoint_dir)
    if path is None:
        raise InputError("no checkpoint found (expected a 'checkpoint' state file and ckpt-N.index)",
                         path=checkpoint_dir, field="--checkpoint_dir")
    return path


def _require_dir(checkpoint_dir: str) -> None:
    if not os.path.isdir(checkpoint_dir):
        raise InputError("checkpoint directory not found", path=checkpoint_dir, field="--checkpoint_dir")


def load_trained_model(checkpoint_dir: str, img_dim: int | None = None, num_ref: int | None = None,
                       embed_norm: str | None = None) -> tuple[CleanNet, int, str]:
    """Builds CleanNet for inference and restores the latest checkpoint in checkpoint_dir.

    img_dim, num_ref, embed_norm: None takes the checkpoint's; a value that disagrees with
    it is an InputError.

    Returns:
      (model, global step of the checkpoint, checkpoint path).
    """
    import tensorflow as tf

    from cleannet.model import CleanNet

    path = require_checkpoint(checkpoint_dir)
    reader = _tf_reader(path)
    config = ModelConfig.resolve(read_config(path, reader),
                                 dict(img_dim=img_dim, num_ref=num_ref, embed_norm=embed_norm), path)
    check_readable(path, reader)  # before restoring: a failed restore leaves TensorFlow's warnings at exit
    model = CleanNet(config.num_ref, config.img_dim, config.embed_norm, dropout_rate=0.0,
                     weight_decay=0.0).build_variables()
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Model and step only: the optimizer's slots in the file are not needed, but every weight is.
    restore(tf.train.Checkpoint(model=model, global_step=global_step), path, None, None, None)
    return model, int(global_step.numpy()), path


def write_inference_file(model: NumpyCleanNet, checkpoint_path: str, step: int) -> str:
    """Writes INFERENCE_FILE beside `checkpoint_path` (its directory), atomically.

    Holds each dense layer's "ENCODER/LAYER/kernel" and ".../bias", "ref_set_encoder/context",
    "global_step", "checkpoint" (the checkpoint's file name prefix) and "model_config" (JSON).
    Returns the file's path.
    """
    from cleannet.numpy_model import CONTEXT

    arrays = {"%s/%s/kernel" % key: kernel for key, (kernel, _) in model.dense.items()}
    arrays.update({"%s/%s/bias" % key: bias for key, (_, bias) in model.dense.items()})
    arrays["%s/%s" % CONTEXT] = model.context
    arrays["global_step"] = np.int64(step)
    arrays["checkpoint"] = np.array(os.path.basename(checkpoint_path))
    arrays["model_config"] = np.array(model.config.to_json())
    path = os.path.join(os.path.dirname(checkpoint_path), INFERENCE_FILE)
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _read_inference_file(path: str) -> tuple[NumpyCleanNet, int, str]:
    """Reads write_inference_file's file. Returns (model, step, checkpoint name).

    Raises DamagedCheckpointError (unreadable, a CRC mismatch, a member missing) or
    InputError (weights that do not fit the stored configuration).
    """
    from cleannet.numpy_model import CONTEXT, DENSE_LAYERS, NumpyCleanNet

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        config = ModelConfig.from_json(str(arrays["model_config"]), path)
        weights = {key: (arrays["%s/%s/kernel" % key], arrays["%s/%s/bias" % key]) for key in DENSE_LAYERS}
        weights[CONTEXT] = arrays["%s/%s" % CONTEXT]
        step, name = int(arrays["global_step"]), str(arrays["checkpoint"])
    except KeyError as err:
        raise DamagedCheckpointError("damaged inference file (no member %s)" % err, path=path) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DamagedCheckpointError("damaged inference file (%s)" % (str(err).splitlines() or ["unreadable"])[0],
                                     path=path) from None
    try:
        return NumpyCleanNet(weights, config.img_dim, config.num_ref, config.embed_norm), step, name
    except ValueError as err:
        raise InputError("the checkpoint does not fit this model (%s)" % err, path=path) from None


def _newest_index_name(checkpoint_dir: str) -> str | None:
    """The file name prefix of the highest-numbered PREFIX-STEP.index in the directory."""
    steps = {}
    for index in glob.glob(os.path.join(glob.escape(checkpoint_dir), "*.index")):
        match = _STEP_OF_INDEX.search(index)
        if match:
            steps[int(match.group(1))] = os.path.basename(index)[:-len(".index")]
    return steps[max(steps)] if steps else None


def _current_inference_file(checkpoint_dir: str) -> tuple[NumpyCleanNet, int, str] | None:
    """INFERENCE_FILE's (model, step, checkpoint path) when it belongs to the directory's
    newest checkpoint; None when absent or older (the caller then uses TensorFlow)."""
    path = os.path.join(checkpoint_dir, INFERENCE_FILE)
    if not os.path.isfile(path):
        return None
    model, step, name = _read_inference_file(path)
    if name != _newest_index_name(checkpoint_dir):
        logging.warning("%s is for %s, not the newest checkpoint; reading the checkpoint with TensorFlow.", path, name)
        return None
    return model, step, os.path.join(checkpoint_dir, name)


def read_model_config(checkpoint_dir: str) -> tuple[dict[str, int | str | None], str]:
    """The model configuration stored with the latest checkpoint in checkpoint_dir, as
    ({img_dim, num_ref, embed_norm} (None for a value an older checkpoint lacks),
    the checkpoint's path)."""
    _require_dir(checkpoint_dir)
    current = _current_inference_file(checkpoint_dir)
    if current is not None:
        config = current[0].config
        return {name: getattr(config, name) for name in FIELDS}, current[2]
    path = require_checkpoint(checkpoint_dir)
    return read_config(path), path


def resolve_model_config(checkpoint_dir: str, given: Mapping[str, Any],
                         fallback: Mapping[str, Any] | None = None) -> ModelConfig:
    """The latest checkpoint's ModelConfig; `given` values (None: not given) must agree with
    it, `fallback` fills what an older checkpoint does not record (ModelConfig.resolve)."""
    stored, path = read_model_config(checkpoint_dir)
    return ModelConfig.resolve(stored, given, path, fallback)


def with_checkpoint_model_config(config: ConfigT) -> ConfigT:
    """A tool's frozen config dataclass (fields checkpoint_dir and model_config.FIELDS) with
    img_dim, num_ref and embed_norm settled: None takes the checkpoint's stored value (the
    original tools' defaults for a checkpoint that records none); a value given that
    disagrees with the checkpoint is refused with one line."""
    from cleannet.model_config import ORIGINAL_DEFAULTS

    given = {name: getattr(config, name) for name in FIELDS}
    model_config = resolve_model_config(config.checkpoint_dir, given, ORIGINAL_DEFAULTS)
    return dataclasses.replace(config, **{name: getattr(model_config, name) for name in FIELDS})


def load_inference_model(checkpoint_dir: str, img_dim: int | None = None, num_ref: int | None = None,
                         embed_norm: str | None = None) -> tuple[NumpyCleanNet, int, str]:
    """The latest checkpoint in checkpoint_dir as a NumPy CleanNet.

    Read from INFERENCE_FILE without TensorFlow when it is current, else restored with
    TensorFlow. Same checks either way: the checkpoint must exist and be readable, its
    weights must have the model's shapes and be finite, and img_dim, num_ref, embed_norm
    (None: the checkpoint's) must agree with the stored configuration.

    Returns:
      (cleannet.numpy_model.NumpyCleanNet, global step of the checkpoint, checkpoint path).
    """
    from cleannet.numpy_model import NumpyCleanNet

    _require_dir(checkpoint_dir)
    given = dict(img_dim=img_dim, num_ref=num_ref, embed_norm=embed_norm)
    current = _current_inference_file(checkpoint_dir)
    if current is not None:
        model, step, path = current
        check_given({name: getattr(model.config, name) for name in FIELDS}, given, path)
        return model, step, path
    keras_model, step, path = load_trained_model(checkpoint_dir, img_dim, num_ref, embed_norm)
    return NumpyCleanNet.from_keras(keras_model), step, path
