"""CleanNet checkpoints: layout, model configuration check, restore.

A checkpoint directory written by train.py (or util/import_tf1_checkpoint.py) holds
`tf.train.CheckpointManager` files `ckpt-STEP.index` / `ckpt-STEP.data-*` and the
`checkpoint` state file; the best model by validation accuracy is kept separately
under `best/` with the same layout. Each checkpoint stores, besides the weights and the
global step, the model configuration (img_dim, num_ref, embed_norm) so that a
checkpoint used with other flags is refused with a clear message instead of giving
meaningless similarities.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from noisylabels.errors import InputError
from noisylabels.errors import DamagedCheckpointError
from noisylabels.run_directory import DAMAGED_CHECKPOINT_ERRORS

if TYPE_CHECKING:
    import keras

    from cleannet.model import CleanNet

BEST_SUBDIR = "best"
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
    config = tf.train.Checkpoint()
    config.img_dim = tf.Variable(model.img_dim, dtype=tf.int64, trainable=False)
    config.num_ref = tf.Variable(model.num_ref, dtype=tf.int64, trainable=False)
    config.embed_norm = tf.Variable(canonical_embed_norm(model.embed_norm), dtype=tf.string, trainable=False)
    return config


def make_checkpoint(model: CleanNet, global_step: tf.Variable,
                    optimizer: keras.optimizers.Optimizer | None = None, **extra: Any) -> tf.train.Checkpoint:
    """The checkpoint object: model, global_step, model_config, optimizer and extras."""
    objects = dict(model=model, global_step=global_step, model_config=model_config(model), **extra)
    if optimizer is not None:
        objects["optimizer"] = optimizer
    return tf.train.Checkpoint(**objects)


def latest_checkpoint(checkpoint_dir: str | None) -> str | None:
    """The newest checkpoint prefix in `checkpoint_dir`, or None."""
    if not checkpoint_dir or not os.path.isdir(checkpoint_dir):
        return None
    return tf.train.latest_checkpoint(checkpoint_dir)


def read_config(checkpoint_path: str) -> dict[str, int | str | None]:
    """Reads (img_dim, num_ref, embed_norm) stored in a checkpoint; None for absent entries."""
    try:
        reader = tf.train.load_checkpoint(checkpoint_path)
    except DAMAGED_CHECKPOINT_ERRORS as err:
        raise DamagedCheckpointError("unreadable checkpoint (%s)" % str(err).splitlines()[0], path=checkpoint_path) from None
    values = {}
    for name, key in _CONFIG_KEYS.items():
        if reader.has_tensor(key):
            value = reader.get_tensor(key)
            values[name] = value.decode() if isinstance(value, bytes) else int(value)
        else:
            values[name] = None
    return values


def check_config(checkpoint_path: str, img_dim: int, num_ref: int, embed_norm: str) -> None:
    """Raises InputError if the checkpoint was made for another img_dim, num_ref or embed_norm."""
    stored = read_config(checkpoint_path)
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
    from cleannet.model import CleanNet

    path = require_checkpoint(checkpoint_dir)
    model = CleanNet(num_ref, img_dim, embed_norm, dropout_rate=0.0, weight_decay=0.0).build_variables()
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    restore(make_checkpoint(model, global_step), path, img_dim, num_ref, embed_norm, partial=True)
    return model, int(global_step.numpy()), path
