"""Imports a checkpoint of the original TF1 CleanNet into a TF2 checkpoint of this port.

The original (TensorFlow 1.6) saved its graph's variables with `tf.train.Saver`. This tool
reads those variables, maps them onto `cleannet.model.CleanNet` (the table in
cleannet/model.py's docstring), checks every shape, and writes a checkpoint that
train.py resumes from (at the original's global step) and inference.py scores with:

    python util/import_tf1_checkpoint.py --tf1_checkpoint=OLD --checkpoint_dir=./runs/

`--tf1_checkpoint` may be
  - a checkpoint prefix, e.g. `/x/model.ckpt-123` (files `model.ckpt-123.index`, ...);
  - a directory whose `checkpoint` state file points at a checkpoint that exists;
  - a directory the original train.py saved into: it used the directory itself as the
    prefix, so the files are `DIR/.index` and `DIR/.data-00000-of-00001` (used when the
    state file is missing or points elsewhere, e.g. after the directory was moved).

The output is `CHECKPOINT_DIR/ckpt-STEP` written by `tf.train.CheckpointManager` with
`cleannet.checkpoints.make_checkpoint`, so it also records img_dim, num_ref and
embed_norm. A non-empty --checkpoint_dir is refused unless --add_to_existing is given;
then the import is added beside the checkpoints there and becomes the latest, and no
checkpoint is deleted (a checkpoint of the same step is refused, never replaced). The
original's optimizer slots (`.../Momentum`) are not imported: training resumes with zero
momentum.

From Python: `import_with(ImportConfig(...))` (or `import_tf1_checkpoint(...)`); only
`main`, `run`, `define_flags` and `config_from_flags` read the flags.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from absl import flags, logging

from noisylabels import output_dir
from noisylabels.errors import InputError
from noisylabels.fileio import output_error, same_file
from noisylabels.flagutil import define_embed_norm, define_img_dim, define_num_ref, run_tool

if TYPE_CHECKING:
    import keras

    from cleannet.model import CleanNet



@dataclasses.dataclass(frozen=True)
class ImportConfig:
    """An import's settings: the command-line flags of the same names (module docstring)."""

    tf1_checkpoint: str
    checkpoint_dir: str
    img_dim: int | None = None
    num_ref: int = 32
    embed_norm: str = "log"
    add_to_existing: bool = False

# TF1 scope of each dense layer → (encoder attribute, layer attribute) in CleanNet.
DENSE_LAYERS = (
    ("query_encoder/fully_connected", "query_encoder", "hidden"),
    ("query_encoder/fully_connected_1", "query_encoder", "embedding"),
    ("query_encoder/fully_connected_2", "query_encoder", "decoder_hidden"),
    ("query_encoder/fully_connected_3", "query_encoder", "reconstruction"),
    ("ref_set_encoder/fully_connected", "ref_set_encoder", "hidden0"),
    ("ref_set_encoder/fully_connected_1", "ref_set_encoder", "hidden"),
    ("ref_set_encoder/fully_connected_2", "ref_set_encoder", "attention_key"),
    ("ref_set_encoder/fully_connected_3", "ref_set_encoder", "embedding"),
)
CONTEXT = "ref_set_encoder/context"
GLOBAL_STEP = "global_step"
# The first query-encoder kernel is [img_dim, 256]: the checkpoint's img_dim.
IMG_DIM_SOURCE = "query_encoder/fully_connected/weights"
CHECKPOINT_NAME = "ckpt"


def variable_map(model: CleanNet) -> dict[str, keras.Variable]:
    """TF1 variable name → the CleanNet variable it becomes (a built model)."""
    mapping = {}
    for scope, encoder_name, layer_name in DENSE_LAYERS:
        layer = getattr(getattr(model, encoder_name), layer_name)
        mapping[scope + "/weights"] = layer.kernel
        mapping[scope + "/biases"] = layer.bias
    mapping[CONTEXT] = model.ref_set_encoder.context
    return mapping


def _is_prefix(prefix):
    """True if `prefix` names a V2 checkpoint (its `.index` file exists)."""
    import tensorflow as tf

    return tf.io.gfile.exists(prefix + ".index")


def resolve_tf1_checkpoint(path: str) -> str:
    """The checkpoint prefix that `path` designates (see the module docstring).

    Raises:
      InputError: nothing readable as a checkpoint at `path`.
    """
    import tensorflow as tf

    field = "--tf1_checkpoint"
    if not path:
        raise InputError("must be given", field=field)
    if os.path.isdir(path):
        try:
            state = tf.train.get_checkpoint_state(path)
        except (tf.errors.OpError, ValueError):
            state = None  # an unparsable state file: try the original's layout
        if state is not None and state.model_checkpoint_path and _is_prefix(state.model_checkpoint_path):
            return state.model_checkpoint_path
        directory_prefix = os.path.join(path, "")  # "DIR/": files DIR/.index, DIR/.data-*
        if _is_prefix(directory_prefix):
            return directory_prefix
        raise InputError("no TF1 checkpoint in this directory (expected a 'checkpoint' state file "
                         "pointing at an existing checkpoint, or the files .index and "
                         ".data-00000-of-00001)", path=path, field=field)
    if _is_prefix(path):
        return path
    stripped = path.rstrip("/")
    if stripped != path and _is_prefix(stripped):
        return stripped
    raise InputError("no TF1 checkpoint found (expected PREFIX.index or a directory)", path=path, field=field)


def open_checkpoint_reader(prefix: str) -> Any:
    """A CheckpointReader for `prefix`.

    `tf.train.load_checkpoint` reads a directory's `checkpoint` state file instead of
    treating the directory as a prefix, so the original's layout (prefix "DIR/") is opened
    with `tf.compat.v1.train.NewCheckpointReader`, the reader load_checkpoint returns.
    """
    import tensorflow as tf

    if os.path.isdir(prefix):
        return tf.compat.v1.train.NewCheckpointReader(prefix)
    return tf.train.load_checkpoint(prefix)


def _read_tensors(reader, prefix):
    """Every tensor of the checkpoint except optimizer slots: name → NumPy array."""
    import tensorflow as tf

    tensors = {}
    ignored = []
    for name in sorted(reader.get_variable_to_shape_map()):
        if name.endswith("/Momentum") or "/Momentum/" in name:
            ignored.append(name)
            continue
        try:
            tensors[name] = reader.get_tensor(name)
        except (tf.errors.OpError, ValueError) as err:
            raise InputError("cannot read variable %s (%s)" % (name, str(err).splitlines()[0]),
                             path=prefix, field="--tf1_checkpoint") from None
    if ignored:
        logging.info("Ignored %d optimizer slot variables (Momentum).", len(ignored))
    return tensors


def _require(tensors, name, prefix):
    if name not in tensors:
        raise InputError("variable %s is missing: not a checkpoint of the original CleanNet graph" % name,
                         path=prefix, field="--tf1_checkpoint")
    return tensors[name]


def _checkpoint_img_dim(tensors, prefix):
    kernel = _require(tensors, IMG_DIM_SOURCE, prefix)
    if kernel.ndim != 2 or kernel.shape[0] < 1:
        raise InputError("variable %s has shape %s, expected [img_dim, 256]" % (IMG_DIM_SOURCE, list(kernel.shape)),
                         path=prefix, field="--tf1_checkpoint")
    return int(kernel.shape[0])


def _checkpoint_global_step(tensors, prefix):
    step = np.asarray(_require(tensors, GLOBAL_STEP, prefix))
    if step.shape != () or not np.issubdtype(step.dtype, np.integer) or int(step) < 0:
        raise InputError("variable %s is %s %s, expected a non-negative integer scalar"
                         % (GLOBAL_STEP, step.dtype, list(step.shape)), path=prefix, field="--tf1_checkpoint")
    return int(step)


def check_output_directory(checkpoint_dir: str, add_to_existing: bool) -> None:
    """--checkpoint_dir is a directory (or missing), empty unless `add_to_existing` (os.path checks only)."""
    if os.path.exists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
        raise InputError("exists and is not a directory", path=checkpoint_dir, field="--checkpoint_dir")
    output_dir.check_output_directory(checkpoint_dir, "--checkpoint_dir", add_to_existing,
                                      "pass --add_to_existing to add the import beside what is there "
                                      "(nothing is deleted; the import becomes the latest checkpoint)")


def import_tf1_checkpoint(tf1_checkpoint: str, checkpoint_dir: str, img_dim: int | None = None, num_ref: int = 32,
                          embed_norm: str = "log", add_to_existing: bool = False) -> str:
    """`import_with(ImportConfig(...))` with the same arguments."""
    return import_with(ImportConfig(tf1_checkpoint, checkpoint_dir, img_dim, num_ref, embed_norm, add_to_existing))


def import_with(config: ImportConfig) -> str:
    """Converts an original TF1 CleanNet checkpoint into this port's checkpoint format.

    Args (the fields of `config`):
      tf1_checkpoint: a TF1 checkpoint prefix or directory (see the module docstring).
      checkpoint_dir: directory for the TF2 checkpoint (created if missing); must not be
        the TF1 checkpoint's own directory.
      img_dim: feature dimension h; None takes it from the checkpoint, a value that
        disagrees with the checkpoint is refused.
      num_ref: references per class R ≥ 1 (the weights do not depend on it; it is recorded
        in the checkpoint for inference.py / train.py's configuration check).
      embed_norm: "log" | "l2norm" | "l2_norm" | "no_norm", as the original was trained.
      (img_dim, num_ref and embed_norm as the flags allow them: the flags check them.)
      add_to_existing: the user's permission to write into a non-empty checkpoint_dir
        (its checkpoints are kept; the import becomes the latest).

    Returns:
      The prefix of the written checkpoint, `checkpoint_dir/ckpt-STEP`.

    Raises:
      InputError: missing or unreadable checkpoint, missing variable, wrong shape, or an
        output directory that is not empty (without add_to_existing) or not a directory.
    """
    import tensorflow as tf

    from cleannet.model import CleanNet

    tf1_checkpoint, checkpoint_dir, img_dim = config.tf1_checkpoint, config.checkpoint_dir, config.img_dim
    num_ref, embed_norm = config.num_ref, config.embed_norm
    check_output_directory(checkpoint_dir, config.add_to_existing)
    prefix = resolve_tf1_checkpoint(tf1_checkpoint)
    if same_file(checkpoint_dir, os.path.dirname(prefix) or "."):
        raise InputError("is the TF1 checkpoint's own directory; write the imported checkpoint to another "
                         "directory", path=checkpoint_dir, field="--checkpoint_dir")
    try:
        reader = open_checkpoint_reader(prefix)
    except (tf.errors.OpError, ValueError) as err:
        raise InputError("unreadable TF1 checkpoint (%s)" % str(err).splitlines()[0],
                         path=prefix, field="--tf1_checkpoint") from None
    logging.info("Reading TF1 checkpoint %s", prefix)
    tensors = _read_tensors(reader, prefix)

    stored_img_dim = _checkpoint_img_dim(tensors, prefix)
    if img_dim is not None and img_dim != stored_img_dim:
        raise InputError("%d given but the checkpoint has img_dim=%d (%s is %s); pass --img_dim=%d "
                         "or leave it out" % (img_dim, stored_img_dim, IMG_DIM_SOURCE,
                                              list(tensors[IMG_DIM_SOURCE].shape), stored_img_dim),
                         path=prefix, field="--img_dim")
    global_step = _checkpoint_global_step(tensors, prefix)

    model = CleanNet(num_ref, stored_img_dim, embed_norm).build_variables()
    mapping = variable_map(model)
    for name, variable in mapping.items():
        value = _require(tensors, name, prefix)
        if tuple(value.shape) != tuple(variable.shape):
            raise InputError("variable %s has shape %s, expected %s for img_dim=%d"
                             % (name, list(value.shape), list(variable.shape), stored_img_dim),
                             path=prefix, field="--tf1_checkpoint")
        if not np.issubdtype(value.dtype, np.floating):
            raise InputError("variable %s has dtype %s, expected floats" % (name, value.dtype),
                             path=prefix, field="--tf1_checkpoint")
    for name, variable in mapping.items():
        variable.assign(tensors[name].astype(tf.as_dtype(variable.dtype).as_numpy_dtype))
        logging.info("  %-40s %-12s -> %s", name, list(tensors[name].shape), variable.path)
    unused = sorted(set(tensors) - set(mapping) - {GLOBAL_STEP})
    if unused:
        logging.warning("Not imported (not part of CleanNet): %s", ", ".join(unused))

    from cleannet.checkpoints import make_checkpoint

    step_variable = tf.Variable(global_step, dtype=tf.int64, trainable=False, name="global_step")
    saved = _save_without_rotation(make_checkpoint(model, step_variable), checkpoint_dir, global_step)
    logging.info("Imported %d variables at global step %d (img_dim=%d, num_ref=%d, embed_norm=%s) into %s",
                 len(mapping), global_step, stored_img_dim, num_ref, embed_norm, saved)
    return saved


def _save_without_rotation(checkpoint, checkpoint_dir, global_step):
    """Saves `checkpoint` as CHECKPOINT_DIR/ckpt-STEP, the latest; deletes no checkpoint.

    A checkpoint of that step already in the directory is refused (never replaced).
    """
    import tensorflow as tf

    prefix = os.path.join(checkpoint_dir, "%s-%d" % (CHECKPOINT_NAME, global_step))
    if tf.io.gfile.glob(prefix + ".*"):
        raise InputError("already holds a checkpoint of step %d (%s.*); it was not written by this import "
                         "and is not replaced: import into another directory" % (global_step, prefix),
                         path=checkpoint_dir, field="--checkpoint_dir")
    try:
        os.makedirs(checkpoint_dir, exist_ok=True)
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=None,
                                             checkpoint_name=CHECKPOINT_NAME)
        return manager.save(checkpoint_number=global_step)
    except OSError as err:
        raise output_error(checkpoint_dir, err) from None
    except tf.errors.OpError as err:
        raise InputError("cannot write the checkpoint (%s)" % str(err).splitlines()[0],
                         path=checkpoint_dir, field="--checkpoint_dir") from None


def define_flags() -> None:
    """Defines the command-line flags (only when run as a script, so that importing this
    module for `import_tf1_checkpoint` never collides with other tools' flags)."""
    flags.DEFINE_string("tf1_checkpoint", None,
                        "The original TF1 checkpoint: a prefix (/x/model.ckpt-123) or a directory.", required=True)
    flags.DEFINE_string("checkpoint_dir", None, "Directory for the imported TF2 checkpoint.", required=True)
    define_img_dim(None, " Default: the checkpoint's.")
    define_num_ref(32)
    define_embed_norm("log")
    flags.DEFINE_bool("add_to_existing", False, "Write into a non-empty --checkpoint_dir: its checkpoints are "
                      "kept (none is deleted) and the import becomes the latest.")


def config_from_flags() -> ImportConfig:
    """The ImportConfig of the parsed command-line flags."""
    FLAGS = flags.FLAGS
    return ImportConfig(FLAGS.tf1_checkpoint, FLAGS.checkpoint_dir, img_dim=FLAGS.img_dim, num_ref=FLAGS.num_ref,
                        embed_norm=FLAGS.embed_norm, add_to_existing=FLAGS.add_to_existing)


def check_paths(config: ImportConfig) -> None:
    """Fails fast, before TensorFlow loads: --tf1_checkpoint names nothing, or --checkpoint_dir
    is refused (`check_output_directory`)."""
    path = config.tf1_checkpoint
    if not (os.path.exists(path) or os.path.exists(path.rstrip("/") + ".index")):
        raise InputError("no TF1 checkpoint found (expected PREFIX.index or a directory)", path=path,
                         field="--tf1_checkpoint")
    check_output_directory(config.checkpoint_dir, config.add_to_existing)


def main(argv: Sequence[str]) -> None:
    from noisylabels.console import load_tensorflow

    if len(argv) > 1:
        raise InputError("unexpected arguments: %s" % " ".join(argv[1:]))
    config = config_from_flags()
    check_paths(config)
    load_tensorflow()  # after the flag and path checks: a bad command line fails without loading TensorFlow
    print(import_with(config))


def run() -> None:
    """Console entry point."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
