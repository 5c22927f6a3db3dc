"""Scores samples with a trained CleanNet, with the original inference.py's flags.

Validation once (accuracy at --val_sim_thres, one similarity per line of val.npy):
    python inference.py --data_dir=DATA --class_list=CLASSES --checkpoint_dir=CKPT \
        --output_file=OUT --mode=val --val_sim_thres=0.2

Predictions for an all-samples TSV (key, [url,] class_name, feature), one line per input
line, in input order:
    python inference.py --data_dir=DATA --image_feature_list=TSV --class_list=CLASSES \
        --checkpoint_dir=CKPT --output_file=OUT --mode=inference

Beyond the paper: every sample is also compared with every class. --output_format=tsv|jsonl
adds best_other_class, best_other_similarity, margin and suggested_class, and
--decision=relative judges a label wrong when another class scores higher than the labelled
one by more than a margin calibrated once on the verified val.npy:
    python inference.py --data_dir=DATA --checkpoint_dir=CKPT --mode=calibrate
which writes CKPT/calibration.json (see docs/decisions.md).

Fixed defects of the original: one similarity per line (not a batch's array per line);
--num_samples=-1 scores every line (not one batch); the last partial batch is scored (no
crash); a missing checkpoint is an error with a non-zero exit. The output file is written
atomically. --checkpoint_dir may name train.py's checkpoint directory (latest model) or its
best/ subdirectory (best model by validation accuracy).

The tool does not load TensorFlow: it reads the checkpoint's inference file (.npz, NumPy)
and scores with the NumPy copy of the model's inference path (cleannet.numpy_model), so its
start-up costs a fraction of a second and the run is bound by reading the TSV.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from absl import flags, logging

from noisylabels.errors import InputError
from noisylabels.flagutil import (define_embed_norm, define_finite_float, define_img_dim, define_num_ref,
                                  run_tool)

from cleannet.choices import CLASS_SCORES, DECISIONS, INFERENCE_MODES, OUTPUT_FORMATS

if TYPE_CHECKING:  # imported for the type hints only: numpy, then the tool's modules, load after the flag checks
    import numpy as np

    from cleannet.calibration import Calibration
    from cleannet.decision import RelativeDecision, ThresholdDecision
    from cleannet.numpy_model import NumpyCleanNet
    from cleannet.scoring import ClassEmbeddingScorer, CrossClassScores


def define_flags() -> None:
    """The original inference.py's flags (names and defaults), then the port's additions."""
    flags.DEFINE_string("data_dir", "./data/", "Data directory containing ref.npy (and val.npy for --mode=val).")
    flags.DEFINE_string("image_feature_list", "./data/input_tsv.tsv",
                        "Image feature list tsv, columns are: [key, url, class_name, feature] or "
                        "[key, class_name, feature]")
    flags.DEFINE_string("class_list", "./data/classes.txt", "List of class name.")
    flags.DEFINE_string("checkpoint_dir", "./runs/", "Directory to keep checkpoints and logs.")
    flags.DEFINE_string("output_file", "./runs/pred.txt", "File path to output prediction.")
    define_img_dim()
    define_num_ref()
    flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
    define_finite_float("val_sim_thres", 0.1, "Similarity threshold for validation (a cosine, in [-1, 1]).",
                        lower_bound=-1.0, upper_bound=1.0)
    define_embed_norm()
    flags.DEFINE_enum("mode", "inference", list(INFERENCE_MODES),
                      "inference|val|calibrate (calibrate: choose the relative decision's margin on val.npy and "
                      "write calibration.json into --checkpoint_dir).")
    flags.DEFINE_integer("num_samples", -1, "Number of samples to infer. -1 indicates evaluating all data",
                         lower_bound=-1)
    # Additions of the port.
    flags.DEFINE_enum("output_format", "plain", list(OUTPUT_FORMATS),
                      "plain: one similarity per line (the original); tsv / jsonl: key, url, class_name, "
                      "similarity, verdict (under --decision), best_other_class, best_other_similarity, "
                      "margin (the labelled class's score minus best_other_similarity, see --class_score), "
                      "suggested_class.")
    flags.DEFINE_string("output_weights", None,
                        "Also write sample weights for classifier training to this TSV (--mode=inference): "
                        "key, class_name, soft weight max(0, cos), hard weight = the verdict under --decision.")
    flags.DEFINE_integer("chunk_rows", 4096, "TSV rows parsed and scored per chunk (--mode=inference).",
                         lower_bound=1)
    flags.DEFINE_enum("decision", "threshold", list(DECISIONS),
                      "threshold: label correct when similarity >= --val_sim_thres (the paper's). relative: label "
                      "wrong when another class is closer than the labelled class by more than the margin in "
                      "--checkpoint_dir/calibration.json (written by train.py for best/, or --mode=calibrate).")
    flags.DEFINE_enum("class_score", "references", list(CLASS_SCORES),
                      "How a sample is compared with every class (the cross-class columns, --decision=relative, "
                      "--mode=calibrate). references: soft nearest reference of the class, in CleanNet's query "
                      "embedding; embedding: cosine to the class embedding (CleanNet's similarity).")
    flags.DEFINE_bool("calibrate_threshold", False,
                      "--mode=calibrate: also choose a similarity threshold for the relative decision (kept "
                      "only when it lowers the error on val.npy).")
    flags.register_multi_flags_validator(
        ["output_weights", "mode"], lambda v: v["output_weights"] is None or v["mode"] == "inference",
        message="--output_weights is written in --mode=inference only")


FLAGS = flags.FLAGS


def load_model(checkpoint_dir: str, img_dim: int, num_ref: int, embed_norm: str) -> tuple[NumpyCleanNet, int, str]:
    """The latest checkpoint in checkpoint_dir as a NumPy CleanNet (no TensorFlow). Returns (model, step, path)."""
    from cleannet.checkpoints import load_inference_model

    model, step, path = load_inference_model(checkpoint_dir, img_dim, num_ref, embed_norm)
    logging.info("Successfully loaded %s at global step = %d.", path, step)
    return model, step, path


def use_checkpoint_model_config() -> None:
    """--img_dim, --num_ref, --embed_norm left out take the checkpoint's stored values (the
    flag defaults only for an older checkpoint without them); one given that disagrees
    with the checkpoint is refused with one line."""
    from cleannet.checkpoints import resolve_model_config
    from cleannet.model_config import FIELDS, given_flags

    config = resolve_model_config(FLAGS.checkpoint_dir, given_flags(FLAGS), {name: FLAGS[name].value for name in FIELDS})
    for name in FIELDS:
        FLAGS[name].value = getattr(config, name)


def calibrate_command() -> str:
    """The command that writes the calibration for this --checkpoint_dir, --data_dir and --class_score."""
    return "inference.py --mode=calibrate --checkpoint_dir=%s --data_dir=%s --class_score=%s" % (
        FLAGS.checkpoint_dir, FLAGS.data_dir, FLAGS.class_score)


def make_decision(checkpoint_path: str) -> ThresholdDecision | RelativeDecision:
    """The --decision: ThresholdDecision(--val_sim_thres) or the calibrated RelativeDecision."""
    from cleannet.calibration import read_calibration
    from cleannet.decision import ThresholdDecision

    if FLAGS.decision == "threshold":
        return ThresholdDecision(FLAGS.val_sim_thres)
    calibration = read_calibration(FLAGS.checkpoint_dir, checkpoint_path, FLAGS.class_score, calibrate_command())
    logging.info("Relative decision: label wrong when margin < %.6g%s (calibrated on %d val samples).",
                 calibration.min_margin, "" if calibration.threshold is None else
                 " or similarity < %.6g" % calibration.threshold, calibration.val_samples)
    return calibration.decision()


def score(scorer: ClassEmbeddingScorer, features: np.ndarray, class_ids: np.ndarray,
          cross_class: bool) -> np.ndarray | CrossClassScores:
    """CrossClassScores when cross_class (every class compared), else similarities [n]."""
    if cross_class:
        return scorer.score_against_all(features, class_ids, FLAGS.class_score, batch_size=FLAGS.batch_size)
    return scorer.score(features, class_ids, batch_size=FLAGS.batch_size)


def check_inputs_exist() -> None:
    """Fails fast, before TensorFlow loads, when an input this run reads is missing."""
    needed = [("--data_dir", os.path.join(FLAGS.data_dir, "ref.npy"))]
    if FLAGS.mode in ("val", "calibrate"):
        needed.append(("--data_dir", os.path.join(FLAGS.data_dir, "val.npy")))
    if FLAGS.mode == "inference":
        needed += [("--image_feature_list", FLAGS.image_feature_list), ("--class_list", FLAGS.class_list)]
    for flag, path in needed:
        if not os.path.isfile(path):
            raise InputError("file not found", path=path, field=flag)
    if not os.path.isdir(FLAGS.checkpoint_dir):
        raise InputError("checkpoint directory not found", path=FLAGS.checkpoint_dir, field="--checkpoint_dir")
    if not os.path.isfile(os.path.join(FLAGS.checkpoint_dir, "checkpoint")):
        raise InputError("no checkpoint found (expected a 'checkpoint' state file and ckpt-N.index)",
                         path=FLAGS.checkpoint_dir, field="--checkpoint_dir")


def refuse_outputs_over_inputs() -> None:
    """An output path naming a file this run reads is refused (it would destroy the input)."""
    from noisylabels.fileio import refuse_output_equal_to_inputs, tf_checkpoint_files

    data_files = ["ref.npy"] + (["val.npy"] if FLAGS.mode == "val" else [])
    inputs = [("--class_list", FLAGS.class_list)]
    inputs += [("a file of --data_dir", os.path.join(FLAGS.data_dir, name)) for name in data_files]
    if FLAGS.mode == "inference":
        inputs.append(("--image_feature_list", FLAGS.image_feature_list))
    refuse_output_equal_to_inputs({"output_file": FLAGS.output_file, "output_weights": FLAGS.output_weights},
                                  inputs + tf_checkpoint_files(FLAGS.checkpoint_dir))


def run_inference(model: NumpyCleanNet, reference: np.ndarray, decision: ThresholdDecision | RelativeDecision) -> int:
    """Streams --image_feature_list and writes one result per input line. Returns the count."""
    import contextlib

    from cleannet.outputs import ResultWriter, WeightWriter
    from cleannet.scoring import ClassEmbeddingScorer
    from cleannet import datafiles, tsv_reader
    from noisylabels.fileio import atomic_open
    from noisylabels.progress import Progress

    class_names = tsv_reader.read_class_list(FLAGS.class_list)
    if len(class_names) != reference.shape[0]:
        from noisylabels.errors import InputError
        raise InputError("has %d classes but ref.npy has %d" % (len(class_names), reference.shape[0]),
                         path=FLAGS.class_list)
    class_to_id = {name: i for i, name in enumerate(class_names)}
    scorer = ClassEmbeddingScorer(model, reference)
    limit = None if FLAGS.num_samples == -1 else FLAGS.num_samples
    cross_class = FLAGS.output_format != "plain" or decision.needs_other_classes
    count = 0
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(Progress(total=limit, unit="samples", desc="inference"))
        out = stack.enter_context(atomic_open(FLAGS.output_file, "w"))
        writer = ResultWriter(out, FLAGS.output_format, decision, class_names if cross_class else None)
        weights = None
        if FLAGS.output_weights:
            weights = WeightWriter(stack.enter_context(atomic_open(FLAGS.output_weights, "w")), decision)
        for chunk in tsv_reader.iter_tsv_chunks(FLAGS.image_feature_list, "all", class_to_id,
                                                img_dim=FLAGS.img_dim, chunk_rows=FLAGS.chunk_rows,
                                                class_list_path=FLAGS.class_list):
            n = len(chunk.class_ids) if limit is None else min(len(chunk.class_ids), limit - count)
            datafiles.refuse_negative_for_log(chunk.features[:n], FLAGS.image_feature_list, FLAGS.embed_norm,
                                              chunk.line_numbers[:n])
            sims = score(scorer, chunk.features[:n], chunk.class_ids[:n], cross_class)
            writer.write(sims, chunk.keys[:n], chunk.urls[:n] if chunk.urls else None, chunk.class_names[:n])
            if weights is not None:
                weights.write(sims, chunk.keys[:n], chunk.class_names[:n])
            count += n
            progress.update(n)
            if limit is not None and count >= limit:
                break
    return count


def load_validation(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """val.npy as (features [n, h], class ids [n], vlabels [n]), class ids checked against ref.npy."""
    from cleannet import datafiles

    val_path = os.path.join(FLAGS.data_dir, "val.npy")
    features, class_ids, vlabels = datafiles.load_verified(val_path, FLAGS.img_dim)
    datafiles.check_class_ids(class_ids, reference.shape[0], val_path)
    datafiles.refuse_negative_for_log(features, val_path, FLAGS.embed_norm)
    datafiles.require_full_batch(len(features) if FLAGS.num_samples == -1 else min(len(features), FLAGS.num_samples),
                                 FLAGS.batch_size, val_path)
    return features, class_ids, vlabels


def run_validation(model: NumpyCleanNet, reference: np.ndarray,
                   decision: ThresholdDecision | RelativeDecision) -> tuple[float, int]:
    """Scores val.npy in full batches, writes one similarity per line, returns the accuracy."""
    import numpy as np

    from cleannet.decision import verdicts_of
    from cleannet.outputs import ResultWriter
    from cleannet.scoring import ClassEmbeddingScorer
    from cleannet import tsv_reader
    from noisylabels.fileio import atomic_open

    features, class_ids, vlabels = load_validation(reference)
    usable = (len(features) // FLAGS.batch_size) * FLAGS.batch_size
    if FLAGS.num_samples != -1:
        usable = min(usable, FLAGS.num_samples)
    if usable < len(features):
        logging.info("Scoring %d of %d val rows (full batches of %d, as the original).", usable, len(features),
                     FLAGS.batch_size)
    all_names = None
    if os.path.exists(FLAGS.class_list):
        all_names = tsv_reader.read_class_list(FLAGS.class_list)
    cross_class = decision.needs_other_classes or (FLAGS.output_format != "plain" and all_names is not None)
    scores = score(ClassEmbeddingScorer(model, reference), features[:usable], class_ids[:usable], cross_class)
    correct = verdicts_of(decision, scores) == vlabels[:usable]
    names = None
    if FLAGS.output_format != "plain" and all_names is not None:
        names = [all_names[i] for i in class_ids[:usable]]
    class_list = all_names if cross_class and FLAGS.output_format != "plain" else None
    with atomic_open(FLAGS.output_file, "w") as out:
        ResultWriter(out, FLAGS.output_format, decision, class_list).write(
            scores, keys=[str(i) for i in range(usable)], class_names=names)
    return float(np.mean(correct)) if usable else float("nan"), usable


def run_calibration(model: NumpyCleanNet, reference: np.ndarray, checkpoint_path: str) -> Calibration:
    """Calibrates the relative decision on every row of val.npy; writes calibration.json."""
    from cleannet.calibration import calibrate_model, write_calibration

    features, class_ids, vlabels = load_validation(reference)
    if reference.shape[0] < 2 or len(features) == 0:
        from noisylabels.errors import InputError
        raise InputError("calibration needs val.npy rows and at least two classes in ref.npy",
                         path=os.path.join(FLAGS.data_dir, "val.npy"))
    calibration = calibrate_model(model, reference, features, class_ids, vlabels, checkpoint_path,
                                  FLAGS.class_score, FLAGS.calibrate_threshold, FLAGS.batch_size)
    path = write_calibration(FLAGS.checkpoint_dir, calibration)
    logging.info("Wrote %s: class score %s, min_margin %.6g, threshold %s, val error %.6f on %d samples.",
                 path, calibration.class_score, calibration.min_margin, calibration.threshold,
                 calibration.val_error, calibration.val_samples)
    return calibration


def main(argv: list[str]) -> None:
    del argv
    refuse_outputs_over_inputs()
    check_inputs_exist()
    use_checkpoint_model_config()
    from cleannet import datafiles

    reference = datafiles.load_ref(os.path.join(FLAGS.data_dir, "ref.npy"), FLAGS.img_dim, FLAGS.num_ref)
    datafiles.refuse_negative_for_log(reference.reshape(len(reference), -1), os.path.join(FLAGS.data_dir, "ref.npy"),
                                      FLAGS.embed_norm)
    model, _, checkpoint_path = load_model(FLAGS.checkpoint_dir, FLAGS.img_dim, FLAGS.num_ref, FLAGS.embed_norm)
    if FLAGS.mode == "calibrate":
        calibration = run_calibration(model, reference, checkpoint_path)
        print("min_margin = %.6g, val error = %.6f" % (calibration.min_margin, calibration.val_error))
        return
    decision = make_decision(checkpoint_path)
    if FLAGS.mode == "inference":
        logging.info("Start inference...")
        count = run_inference(model, reference, decision)
        logging.info("Wrote %d predictions to %s.", count, FLAGS.output_file)
        if FLAGS.output_weights:
            logging.info("Wrote %d sample weights (hard weight: %s decision) to %s.", count, decision.name,
                         FLAGS.output_weights)
    else:
        logging.info("Start validate once...")
        acc, count = run_validation(model, reference, decision)
        logging.info("acc = %.6f (%d samples)", acc, count)
        print("acc = %.6f" % acc)


def run() -> None:
    """Console entry point."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
