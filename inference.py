"""Scores samples with a trained CleanNet (SPEC.md 1.5), with the original inference.py's flags.

Validation once (accuracy at --val_sim_thres, one similarity per line of val.npy):
    python inference.py --data_dir=DATA --class_list=CLASSES --checkpoint_dir=CKPT \
        --output_file=OUT --mode=val --val_sim_thres=0.2

Predictions for an all-samples TSV (key, [url,] class_name, feature), one line per input
line, in input order:
    python inference.py --data_dir=DATA --image_feature_list=TSV --class_list=CLASSES \
        --checkpoint_dir=CKPT --output_file=OUT --mode=inference

Fixed defects of the original: one similarity per line (not a batch's array per line);
--num_samples=-1 scores every line (not one batch); the last partial batch is scored (no
crash); a missing checkpoint is an error with a non-zero exit. The output file is written
atomically. --checkpoint_dir may name train.py's checkpoint directory (latest model) or its
best/ subdirectory (best model by validation accuracy).
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging

from util.errors import cli_main
from util.process_exit import skip_teardown_on_success

flags.DEFINE_string("data_dir", "./data/", "Data directory containing ref.npy (and val.npy for --mode=val).")
flags.DEFINE_string("image_feature_list", "./data/input_tsv.tsv",
                    "Image feature list tsv, columns are: [key, url, class_name, feature] or "
                    "[key, class_name, feature]")
flags.DEFINE_string("class_list", "./data/classes.txt", "List of class name.")
flags.DEFINE_string("checkpoint_dir", "./runs/", "Directory to keep checkpoints and logs.")
flags.DEFINE_string("output_file", "./runs/pred.txt", "File path to output prediction.")
flags.DEFINE_integer("img_dim", 2048, "Dimensionality of the image embedding")
flags.DEFINE_integer("num_ref", 32, "Number of reference image embeddings for a class")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_float("val_sim_thres", 0.1, "Similarity threshold for validation.")
flags.DEFINE_string("embed_norm", "log", "log|l2norm|no_norm (l2_norm is accepted as l2norm).")
flags.DEFINE_enum("mode", "inference", ["inference", "val"], "inference|val")
flags.DEFINE_integer("num_samples", -1, "Number of samples to infer. -1 indicates evaluating all data")
# Additions of the port.
flags.DEFINE_enum("output_format", "plain", ["plain", "tsv", "jsonl"],
                  "plain: one similarity per line (the original); tsv / jsonl: key, url, class_name, "
                  "similarity and the verdict at --val_sim_thres.")
flags.DEFINE_string("output_weights", None,
                    "Also write sample weights for classifier training to this TSV (--mode=inference): "
                    "key, class_name, soft weight max(0, cos), hard weight 1[cos >= --val_sim_thres].")
flags.DEFINE_integer("chunk_rows", 4096, "TSV rows parsed and scored per chunk (--mode=inference).")

FLAGS = flags.FLAGS


def load_model(checkpoint_dir, img_dim, num_ref, embed_norm):
    """Builds CleanNet and restores the latest checkpoint in checkpoint_dir. Returns (model, step)."""
    from cleannet.checkpoints import load_trained_model

    model, step, path = load_trained_model(checkpoint_dir, img_dim, num_ref, embed_norm)
    logging.info("Successfully loaded %s at global step = %d.", path, step)
    return model, step


def check_flags():
    from cleannet.model import EMBED_NORMS
    from util.errors import check_flag

    check_flag(FLAGS.img_dim > 0, "img_dim", "must be positive, got %d" % FLAGS.img_dim)
    check_flag(FLAGS.num_ref > 0, "num_ref", "must be positive, got %d" % FLAGS.num_ref)
    check_flag(FLAGS.batch_size > 0, "batch_size", "must be positive, got %d" % FLAGS.batch_size)
    check_flag(FLAGS.chunk_rows > 0, "chunk_rows", "must be positive, got %d" % FLAGS.chunk_rows)
    check_flag(FLAGS.num_samples == -1 or FLAGS.num_samples >= 0, "num_samples",
               "must be -1 (all) or a count, got %d" % FLAGS.num_samples)
    check_flag(FLAGS.embed_norm in EMBED_NORMS, "embed_norm",
               "must be one of %s, got %r" % ("|".join(EMBED_NORMS), FLAGS.embed_norm))
    check_flag(FLAGS.output_weights is None or FLAGS.mode == "inference", "output_weights",
               "is written in --mode=inference only")


def run_inference(model, reference):
    """Streams --image_feature_list and writes one result per input line. Returns the count."""
    import contextlib

    from cleannet.outputs import ResultWriter, WeightWriter
    from cleannet.scoring import ClassEmbeddingScorer
    from util import tsv_reader
    from util.fileio import atomic_open
    from util.progress import Progress

    class_names = tsv_reader.read_class_list(FLAGS.class_list)
    if len(class_names) != reference.shape[0]:
        from util.errors import InputError
        raise InputError("has %d classes but ref.npy has %d" % (len(class_names), reference.shape[0]),
                         path=FLAGS.class_list)
    class_to_id = {name: i for i, name in enumerate(class_names)}
    scorer = ClassEmbeddingScorer(model, reference)
    limit = None if FLAGS.num_samples == -1 else FLAGS.num_samples
    count = 0
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(Progress(total=limit, unit="samples", desc="inference"))
        out = stack.enter_context(atomic_open(FLAGS.output_file, "w"))
        writer = ResultWriter(out, FLAGS.output_format, FLAGS.val_sim_thres)
        weights = None
        if FLAGS.output_weights:
            weights = WeightWriter(stack.enter_context(atomic_open(FLAGS.output_weights, "w")), FLAGS.val_sim_thres)
        for chunk in tsv_reader.iter_tsv_chunks(FLAGS.image_feature_list, "all", class_to_id,
                                                img_dim=FLAGS.img_dim, chunk_rows=FLAGS.chunk_rows,
                                                class_list_path=FLAGS.class_list):
            n = len(chunk.class_ids) if limit is None else min(len(chunk.class_ids), limit - count)
            sims = scorer.score(chunk.features[:n], chunk.class_ids[:n], batch_size=FLAGS.batch_size)
            writer.write(sims, chunk.keys[:n], chunk.urls[:n] if chunk.urls else None, chunk.class_names[:n])
            if weights is not None:
                weights.write(sims, chunk.keys[:n], chunk.class_names[:n])
            count += n
            progress.update(n)
            if limit is not None and count >= limit:
                break
    return count


def run_validation(model, reference):
    """Scores val.npy in full batches, writes one similarity per line, returns the accuracy."""
    import numpy as np

    from cleannet.outputs import ResultWriter
    from cleannet.scoring import ClassEmbeddingScorer
    from util import datafiles, tsv_reader
    from util.fileio import atomic_open

    val_path = os.path.join(FLAGS.data_dir, "val.npy")
    features, class_ids, vlabels = datafiles.load_verified(val_path, FLAGS.img_dim)
    datafiles.check_class_ids(class_ids, reference.shape[0], val_path)
    usable = (len(features) // FLAGS.batch_size) * FLAGS.batch_size
    if FLAGS.num_samples != -1:
        usable = min(usable, FLAGS.num_samples)
    if usable < len(features):
        logging.info("Scoring %d of %d val rows (full batches of %d, as the original).", usable, len(features),
                     FLAGS.batch_size)
    scorer = ClassEmbeddingScorer(model, reference)
    sims = scorer.score(features[:usable], class_ids[:usable], batch_size=FLAGS.batch_size)
    labels = vlabels[:usable]
    correct = ((labels == 1) & (sims >= FLAGS.val_sim_thres)) | ((labels == 0) & (sims < FLAGS.val_sim_thres))
    names = None
    if FLAGS.output_format != "plain" and os.path.exists(FLAGS.class_list):
        all_names = tsv_reader.read_class_list(FLAGS.class_list)
        names = [all_names[i] for i in class_ids[:usable]]
    with atomic_open(FLAGS.output_file, "w") as out:
        ResultWriter(out, FLAGS.output_format, FLAGS.val_sim_thres).write(
            sims, keys=[str(i) for i in range(usable)], class_names=names)
    return float(np.mean(correct)) if usable else float("nan"), usable


def main(argv):
    del argv
    check_flags()
    from util import datafiles

    reference = datafiles.load_ref(os.path.join(FLAGS.data_dir, "ref.npy"), FLAGS.img_dim, FLAGS.num_ref)
    model, _ = load_model(FLAGS.checkpoint_dir, FLAGS.img_dim, FLAGS.num_ref, FLAGS.embed_norm)
    if FLAGS.mode == "inference":
        logging.info("Start inference...")
        count = run_inference(model, reference)
        logging.info("Wrote %d predictions to %s.", count, FLAGS.output_file)
    else:
        logging.info("Start validate once...")
        acc, count = run_validation(model, reference)
        logging.info("acc = %.6f (%d samples)", acc, count)
        print("acc = %.6f" % acc)


def run():
    """Console entry point."""
    app.run(skip_teardown_on_success(cli_main(main)))


if __name__ == "__main__":
    run()
