"""Exports a trained CleanNet as a TensorFlow SavedModel for serving.

    python util/export_saved_model.py --checkpoint_dir=train/checkpoints/best \\
        --data_dir=data/ --class_list=data/classes.txt --img_dim=2048 --num_ref=32 \\
        --embed_norm=log --export_dir=exported/cleannet

The latest checkpoint of --checkpoint_dir is restored (its stored img_dim / num_ref /
embed_norm must match the flags), the class embeddings φ_s of every class are computed
once from data_dir/ref.npy in inference mode and baked into the SavedModel as a constant
[num_class, 128] table, next to the query encoder's weights. Signatures:

  serving_default(features float32 [None, img_dim], class_ids int64 [None])
      -> {"similarity": float32 [None]}
  score_by_name(features float32 [None, img_dim], class_names string [None])
      -> {"similarity": float32 [None]}

`similarity` is the cosine similarity of the sample to its class (inference.py's output;
the label is judged correct when it is ≥ the validation threshold, 0.1 by default).
A class id outside [0, num_class) or a class name not in the class list gives NaN for that
sample (the batch is still scored; NaN compares false with any threshold).

    loaded = tf.saved_model.load("exported/cleannet")
    sims = loaded.signatures["score_by_name"](features=x, class_names=tf.constant(["cat"]))

The SavedModel is written to a temporary directory beside --export_dir and moved into
place when complete, readable by other users (directories 0755, files 0644 under umask
022), with an ownership marker `owner.json` (this tool's name, a format version, the
settings). A non-empty --export_dir is refused unless --overwrite is given; even then an
existing entry is replaced only when that marker proves an earlier export wrote the
directory, and only the SavedModel's own entries (saved_model.pb, variables/, assets/,
fingerprint.pb, owner.json); nothing else in the directory is touched. Without the proof
(a directory the user made that holds e.g. assets/) the export is refused with one line
listing what it would have replaced.

From Python: `export_with(ExportConfig(...))` (or `export_saved_model(...)`); only
`main`, `run`, `define_flags` and `config_from_flags` read the flags.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from absl import flags, logging

from noisylabels import output_dir
from noisylabels.errors import InputError, check_flag
from noisylabels.fileio import registered_temporary
from noisylabels.flagutil import define_embed_norm, define_img_dim, define_num_ref, run_tool

if TYPE_CHECKING:
    import tensorflow as tf

    from cleannet.model import CleanNet

TOOL = "export_saved_model"
# The entries tf.saved_model.save writes and the marker: all that --overwrite may replace.
SAVED_MODEL_ENTRIES = ("saved_model.pb", "saved_model.pbtxt", "variables", "assets", "assets.extra",
                       "fingerprint.pb", output_dir.OWNER_MARKER)


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """An export's settings: the command-line flags of the same names (module docstring)."""

    checkpoint_dir: str
    data_dir: str
    class_list: str
    export_dir: str
    img_dim: int | None = None  # None: the checkpoint's (img_dim, num_ref, embed_norm)
    num_ref: int | None = None
    embed_norm: str | None = None
    overwrite: bool = False


def build_serving_module(model: CleanNet, class_embeddings: np.ndarray, class_names: Sequence[str]) -> tf.Module:
    """A tf.Module scoring (features, class) pairs with a fixed class-embedding table.

    Args:
      model: a built CleanNet (only its query encoder and embed_norm are used).
      class_embeddings: float32 [C, 128], model.encode_classes(ref) in inference mode.
      class_names: list of C str, class id = index.

    Returns:
      a tf.Module with tf.functions `score(features, class_ids)` and
      `score_by_name(features, class_names)`, each returning {"similarity": float32 [B]}.
    """
    import tensorflow as tf

    from cleannet.metrics import similarity

    if len(class_names) != int(class_embeddings.shape[0]):
        raise ValueError("%d class names for %d class embeddings" % (len(class_names), class_embeddings.shape[0]))
    img_dim = model.img_dim
    module = tf.Module()
    module.model = model
    module.class_embeddings = tf.Variable(tf.constant(class_embeddings, tf.float32), trainable=False,
                                          name="class_embeddings")
    module.class_table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(class_names), tf.string),
                                            tf.range(len(class_names), dtype=tf.int64)),
        default_value=-1)
    num_classes = len(class_names)

    def score_ids(features, class_ids):
        class_ids = tf.cast(class_ids, tf.int64)
        known = (class_ids >= 0) & (class_ids < num_classes)
        safe_ids = tf.where(known, class_ids, tf.zeros_like(class_ids))
        _, phi_q, _ = model.encode_queries(features)
        phi_s = tf.gather(module.class_embeddings, safe_ids)
        sims = similarity(phi_s, phi_q)
        return {"similarity": tf.where(known, sims, tf.fill(tf.shape(sims), float("nan")))}

    @tf.function(input_signature=[tf.TensorSpec([None, img_dim], tf.float32, name="features"),
                                  tf.TensorSpec([None], tf.int64, name="class_ids")])
    def score(features, class_ids):
        return score_ids(features, class_ids)

    @tf.function(input_signature=[tf.TensorSpec([None, img_dim], tf.float32, name="features"),
                                  tf.TensorSpec([None], tf.string, name="class_names")])
    def score_by_name(features, class_names):
        return score_ids(features, module.class_table.lookup(class_names))

    module.score = score
    module.score_by_name = score_by_name
    return module


def load_model(checkpoint_dir: str, img_dim: int, num_ref: int, embed_norm: str) -> tuple[CleanNet, int]:
    """Builds CleanNet and restores the latest checkpoint in checkpoint_dir. Returns (model, step)."""
    from cleannet.checkpoints import load_trained_model

    model, step, _ = load_trained_model(checkpoint_dir, img_dim, num_ref, embed_norm)
    return model, step


def export_saved_model(checkpoint_dir: str, data_dir: str, class_list: str, export_dir: str, img_dim: int | None = None,
                       num_ref: int | None = None, embed_norm: str | None = None,
                       overwrite: bool = False) -> tuple[str, int]:
    """`export_with(ExportConfig(...))` with the same arguments."""
    return export_with(ExportConfig(checkpoint_dir, data_dir, class_list, export_dir, img_dim, num_ref, embed_norm,
                                    overwrite))


def check_export_dir(config: ExportConfig):
    """Refuses --export_dir when it is a file, non-empty without --overwrite, or (with it)
    holds SavedModel entries no marker of this tool proves it wrote. Returns the proof or
    None (os.path checks only: they come before TensorFlow loads)."""
    export_dir = os.path.abspath(config.export_dir)
    output_dir.check_output_directory(export_dir, "--export_dir", config.overwrite,
                                      "pass --overwrite to replace an earlier export in it (other files are kept)")
    if not os.path.isdir(export_dir):
        return None
    proof = output_dir.ownership(export_dir, TOOL)
    present = sorted(n for n in SAVED_MODEL_ENTRIES if os.path.lexists(os.path.join(export_dir, n)))
    if present and proof is None:
        raise InputError("holds %s, but no %s of an earlier export proves this tool wrote them; nothing was "
                         "replaced: move them away or choose another --export_dir"
                         % (", ".join(present), output_dir.OWNER_MARKER), path=export_dir, field="--export_dir")
    return proof


def export_with(config: ExportConfig) -> tuple[str, int]:
    """Restores CleanNet from checkpoint_dir and writes the SavedModel to export_dir atomically.

    Args:
      config: checkpoint_dir: a train.py checkpoint directory (or its best/ subdirectory);
        data_dir: holds ref.npy [C, num_ref, img_dim]; class_list: the class list (C
        names); export_dir: the SavedModel directory (module docstring for what an
        existing one needs); img_dim, num_ref, embed_norm: the model configuration, None:
        the checkpoint's (a value given must agree with it; the original defaults for a
        checkpoint that records none); overwrite: the user's explicit permission to
        replace an earlier export in export_dir.

    Returns:
      (export_dir, global step of the restored checkpoint).
    """
    from cleannet import datafiles, tsv_reader
    from cleannet.checkpoints import with_checkpoint_model_config

    config = with_checkpoint_model_config(config)
    export_dir = os.path.abspath(config.export_dir)
    proof = check_export_dir(config)
    class_names = tsv_reader.read_class_list(config.class_list)
    reference = datafiles.load_ref(os.path.join(config.data_dir, "ref.npy"), config.img_dim, config.num_ref)
    if len(class_names) != reference.shape[0]:
        raise InputError("has %d classes but ref.npy has %d" % (len(class_names), reference.shape[0]),
                         path=config.class_list)
    model, step = load_model(config.checkpoint_dir, config.img_dim, config.num_ref, config.embed_norm)
    from cleannet.numpy_model import NumpyCleanNet
    from cleannet.scoring import ClassEmbeddingScorer
    class_embeddings = ClassEmbeddingScorer(NumpyCleanNet.from_keras(model), reference).class_embeddings
    module = build_serving_module(model, class_embeddings, class_names)
    settings = dict(checkpoint_dir=os.path.abspath(config.checkpoint_dir), step=int(step), img_dim=config.img_dim,
                    num_ref=config.num_ref, embed_norm=config.embed_norm, classes=len(class_names))
    _save_and_publish(module, export_dir, settings, proof)
    logging.info("Exported the model of step %d (%d classes) to %s", step, len(class_names), export_dir)
    return export_dir, step


def _save_and_publish(module, export_dir, settings, proof):
    """tf.saved_model.save and the marker into a staging directory, then `output_dir.publish_entries`."""
    import tensorflow as tf

    from noisylabels.state_files import write_marker

    staging = output_dir.make_staging_directory(export_dir)
    with registered_temporary(staging):
        try:
            tf.saved_model.save(module, staging, signatures={"serving_default": module.score,
                                                             "score_by_name": module.score_by_name})
        except (tf.errors.OpError, OSError) as err:
            raise InputError("cannot write the SavedModel (%s)" % str(err).splitlines()[0],
                             path=export_dir, field="--export_dir") from None
        write_marker(os.path.join(staging, output_dir.OWNER_MARKER), TOOL, settings)
        output_dir.publish_entries(staging, export_dir, SAVED_MODEL_ENTRIES, proof)


def define_flags() -> None:
    flags.DEFINE_string("checkpoint_dir", "./train/checkpoints/",
                        "Checkpoint directory of train.py (or its best/ subdirectory).")
    flags.DEFINE_string("data_dir", "./data/", "Data directory containing ref.npy.")
    flags.DEFINE_string("class_list", "./data/classes.txt", "List of class names, one per line.")
    define_img_dim(2048)
    define_num_ref(32)
    define_embed_norm("log")
    flags.DEFINE_string("export_dir", None, "The SavedModel directory to write; a non-empty one is refused "
                        "unless --overwrite.", required=True)
    flags.DEFINE_bool("overwrite", False, "Replace an earlier export in a non-empty --export_dir (only when its "
                      "owner.json proves this tool wrote it; only saved_model.pb, variables/, assets/, "
                      "fingerprint.pb, owner.json; other files are kept).")


def config_from_flags() -> ExportConfig:
    """The ExportConfig of the parsed command-line flags."""
    FLAGS = flags.FLAGS
    from cleannet.model_config import given_flags

    return ExportConfig(FLAGS.checkpoint_dir, FLAGS.data_dir, FLAGS.class_list, FLAGS.export_dir,
                        **given_flags(FLAGS), overwrite=FLAGS.overwrite)


def check_inputs_exist(config: ExportConfig) -> None:
    """Fails fast, before TensorFlow loads, when an input the export reads is missing."""
    for flag, path in (("--data_dir", os.path.join(config.data_dir, "ref.npy")), ("--class_list", config.class_list)):
        if not os.path.isfile(path):
            raise InputError("file not found", path=path, field=flag)
    if not os.path.isdir(config.checkpoint_dir):
        raise InputError("checkpoint directory not found", path=config.checkpoint_dir, field="--checkpoint_dir")


def main(argv: Sequence[str]) -> None:
    from noisylabels.console import load_tensorflow

    check_flag(len(argv) == 1, "export_dir", "unexpected arguments %s" % argv[1:])
    config = config_from_flags()
    check_inputs_exist(config)
    check_export_dir(config)
    load_tensorflow()  # after the flag and file checks: a bad command line fails without loading TensorFlow
    path, _ = export_with(config)
    print(path)


def run() -> None:
    """Console entry point (cleannet-export-saved-model)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
