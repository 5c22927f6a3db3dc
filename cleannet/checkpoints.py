"""CleanNet checkpoints: layout, model configuration check, restore.

A checkpoint directory written by train.py (or util/import_tf1_checkpoint.py) holds
`tf.train.CheckpointManager` files `ckpt-STEP.index` / `ckpt-STEP.data-*` and the
`checkpoint` state file; the best model by validation accuracy is kept separately
under `best/` with the same layout. Each checkpoint stores, besides the weights and the
global step, the model configuration (img_dim, num_ref, embed_norm) so that a
checkpoint used with other flags is refused with a clear message instead of giving
meaningless similarities.

TensorFlow is imported only by the functions that build or restore a Keras model:
inference reads checkpoints with noisylabels.tensor_bundle into a NumPy CleanNet
(`load_inference_model`), without loading TensorFlow.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from noisylabels import tensor_bundle
from noisylabels.errors import DamagedCheckpointError, InputError

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from cleannet.model import CleanNet
    from cleannet.numpy_model import NumpyCleanNet

BEST_SUBDIR = "best"
GLOBAL_STEP_KEY = "global_step/.ATTRIBUTES/VARIABLE_VALUE"
_CONFIG_KEYS = {
    "img_dim": "model_config/img_dim/.ATTRIBUTES/VARIABLE_VALUE",
    "num_ref": "model_config/num_ref/.ATTRIBUTES/VARIABLE_VALUE",
    "embed_norm": "model_config/embed_norm/.ATTRIBUTES/VARIABLE_VALUE",
}


def canonical_embed_norm(embed_norm: str) -> str:
    """'l2_norm' (the original help text) and 'l2norm' (its code) are the same setting."""
    return "l2norm" if embed_norm == "l2_norm" else embed_norm


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


def latest_checkpoint(checkpoint_dir: str | None) -> str | None:
    """The newest checkpoint prefix in `checkpoint_dir`, or None."""
    if not checkpoint_dir or not os.path.isdir(checkpoint_dir):
        return None
    return tensor_bundle.latest_checkpoint(checkpoint_dir)


def open_reader(checkpoint_path: str) -> Any:
    """A reader of the checkpoint's tensors (`has_tensor(name)`, `get_tensor(name)`).

    noisylabels.tensor_bundle's, without TensorFlow; TensorFlow's own reader only for a
    checkpoint layout that one does not implement. Raises DamagedCheckpointError.
    """
    try:
        return tensor_bundle.CheckpointReader(checkpoint_path)
    except tensor_bundle.UnsupportedCheckpointError:
        from noisylabels.console import load_tensorflow
        from noisylabels.run_directory import DAMAGED_CHECKPOINT_ERRORS

        tf = load_tensorflow()
        try:
            return tf.train.load_checkpoint(checkpoint_path)
        except DAMAGED_CHECKPOINT_ERRORS as err:
            raise DamagedCheckpointError("unreadable checkpoint (%s)" % str(err).splitlines()[0],
                                         path=checkpoint_path) from None


def read_config(checkpoint_path: str, reader: Any = None) -> dict[str, int | str | None]:
    """Reads (img_dim, num_ref, embed_norm) stored in a checkpoint; None for absent entries.

    reader: the checkpoint's `open_reader`, when the caller has it open already.
    """
    reader = reader if reader is not None else open_reader(checkpoint_path)
    values = {}
    for name, key in _CONFIG_KEYS.items():
        if reader.has_tensor(key):
            value = reader.get_tensor(key)
            if hasattr(value, "item"):  # a 0-d array
                value = value.item()
            values[name] = value.decode() if isinstance(value, bytes) else int(value)
        else:
            values[name] = None
    return values


def check_config(checkpoint_path: str, img_dim: int, num_ref: int, embed_norm: str, reader: Any = None) -> None:
    """Raises InputError if the checkpoint was made for another img_dim, num_ref or embed_norm."""
    stored = read_config(checkpoint_path, reader)
    wanted = {"img_dim": img_dim, "num_ref": num_ref, "embed_norm": canonical_embed_norm(embed_norm)}
    for name, value in wanted.items():
        if stored[name] is not None and stored[name] != value:
            raise InputError("the checkpoint was made with %s=%s but --%s=%s; pass --%s=%s or use "
                             "another checkpoint" % (name, stored[name], name, value, name, stored[name]),
                             path=checkpoint_path, field="--%s" % name)


def restore(checkpoint: tf.train.Checkpoint, checkpoint_path: str, img_dim: int, num_ref: int,
            embed_norm: str, partial: bool = False) -> Any:
    """Restores `checkpoint` (from make_checkpoint) from `checkpoint_path` after checking the config.

    Args:
      partial: accept a checkpoint lacking some objects (e.g. no optimizer slots).

    Returns:
      The restore status.
    """
    from noisylabels.run_directory import DAMAGED_CHECKPOINT_ERRORS

    check_config(checkpoint_path, img_dim, num_ref, embed_norm)
    try:
        status = checkpoint.restore(checkpoint_path)
        if partial:
            status.expect_partial()
        else:
            status.assert_existing_objects_matched()
    except AssertionError as err:
        raise InputError("the checkpoint does not fit this model (%s)" % str(err).splitlines()[0],
                         path=checkpoint_path) from None
    except DAMAGED_CHECKPOINT_ERRORS as err:
        raise DamagedCheckpointError("cannot restore the model from this damaged checkpoint (%s)"
                                     % str(err).splitlines()[0], path=checkpoint_path) from None
    return status


def require_checkpoint(checkpoint_dir: str) -> str:
    """The latest checkpoint in `checkpoint_dir`, or an InputError saying none was found."""
    if not os.path.isdir(checkpoint_dir):
        raise InputError("checkpoint directory not found", path=checkpoint_dir, field="--checkpoint_dir")
    path = latest_checkpoint(checkpoint_dir)
    if path is None:
        raise InputError("no checkpoint found (expected a 'checkpoint' state file and ckpt-N.index)",
                         path=checkpoint_dir, field="--checkpoint_dir")
    return path


def load_trained_model(checkpoint_dir: str, img_dim: int, num_ref: int,
                       embed_norm: str) -> tuple[CleanNet, int, str]:
    """Builds CleanNet for inference and restores the latest checkpoint in checkpoint_dir.

    Returns:
      (model, global step of the checkpoint, checkpoint path).
    """
    import tensorflow as tf

    from cleannet.model import CleanNet

    path = require_checkpoint(checkpoint_dir)
    model = CleanNet(num_ref, img_dim, embed_norm, dropout_rate=0.0, weight_decay=0.0).build_variables()
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    restore(make_checkpoint(model, global_step), path, img_dim, num_ref, embed_norm, partial=True)
    return model, int(global_step.numpy()), path


def _variable(reader: Any, keys: dict[str, str | None], checkpoint_path: str, *object_paths: str) -> Any:
    """The value of the first of `object_paths` (e.g. "model/ref_set_encoder/context") that
    the checkpoint holds (keys: from tensor_bundle.variable_keys); InputError naming the
    first path when it holds none."""
    for object_path in object_paths:
        if keys[object_path] is not None:
            return reader.get_tensor(keys[object_path])
    raise InputError("the checkpoint does not fit this model (no variable %s)" % object_paths[0], path=checkpoint_path)


def load_inference_model(checkpoint_dir: str, img_dim: int, num_ref: int,
                         embed_norm: str) -> tuple[NumpyCleanNet, int, str]:
    """The latest checkpoint in checkpoint_dir as a NumPy CleanNet, without TensorFlow.

    Same checks as `load_trained_model`: the checkpoint must exist, be readable (checksums
    verified) and have been made with this img_dim, num_ref and embed_norm; its weights
    must have the model's shapes and be finite.

    Returns:
      (cleannet.numpy_model.NumpyCleanNet, global step of the checkpoint, checkpoint path).
    """
    from cleannet.numpy_model import CONTEXT, DENSE_LAYERS, NumpyCleanNet

    path = require_checkpoint(checkpoint_dir)
    reader = open_reader(path)
    check_config(path, img_dim, num_ref, embed_norm, reader)
    # Keras 3 tracks a Dense layer's kernel as `_kernel`, Keras 2 as `kernel`.
    candidates = {layer: ["model/%s/%s/%s" % (layer + (name,)) for name in ("_kernel", "kernel", "bias")]
                  for layer in DENSE_LAYERS}
    context_path = "model/%s/%s" % CONTEXT
    keys = tensor_bundle.variable_keys(reader, [p for paths in candidates.values() for p in paths] + [context_path],
                                       path)
    weights = {layer: (_variable(reader, keys, path, kernel, old_kernel), _variable(reader, keys, path, bias))
               for layer, (kernel, old_kernel, bias) in candidates.items()}
    weights[CONTEXT] = _variable(reader, keys, path, context_path)
    step = int(reader.get_tensor(GLOBAL_STEP_KEY)) if reader.has_tensor(GLOBAL_STEP_KEY) else 0
    try:
        model = NumpyCleanNet(weights, img_dim, num_ref, embed_norm)
    except ValueError as err:
        raise InputError("the checkpoint does not fit this model (%s)" % err, path=path) from None
    return model, step, path
