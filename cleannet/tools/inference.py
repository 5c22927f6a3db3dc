"""Scores samples with a trained CleanNet, with the original inference.py's flags.

Validation once (accuracy at --val_sim_thres, one similarity per line of val.npy):
    python inference.py --data_dir=DATA --class_list=CLASSES --checkpoint_dir=CKPT \\
        --output_file=OUT --mode=val --val_sim_thres=0.2

Predictions for an all-samples TSV (key, [url,] class_name, feature), one line per input
line, in input order:
    python inference.py --data_dir=DATA --image_feature_list=TSV --class_list=CLASSES \\
        --checkpoint_dir=CKPT --output_file=OUT --mode=inference

Beyond the paper: every sample is also compared with every class. --output_format=tsv|jsonl
adds best_other_class, best_other_similarity, margin, suggested_class and class_score, and
--decision=relative judges a label wrong when another class scores higher than the labelled
one by more than a margin calibrated once on the verified val.npy:
    python inference.py --data_dir=DATA --checkpoint_dir=CKPT --mode=calibrate
which writes CKPT/calibration.json (see docs/decisions.md).

Fixed defects of the original: one similarity per line (not a batch's array per line);
--num_samples=-1 scores every line (not one batch); the last partial batch is scored (no
crash); --mode=val and --mode=calibrate score every row of val.npy, however few (the
original scored full batches only); a missing checkpoint is an error with a non-zero exit.
The output file is written atomically. --checkpoint_dir may name train.py's checkpoint
directory (latest model) or its best/ subdirectory (best model by validation accuracy).

From Python: infer(InferenceConfig(...)) does what the command does (the flags are the
config's fields).

The tool does not load TensorFlow: it reads the checkpoint's inference file (.npz, NumPy)
and scores with the NumPy copy of the model's inference path (cleannet.numpy_model), so its
start-up costs a fraction of a second and the run is bound by reading the TSV.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from absl import flags, logging

from noisylabels.errors import InputError
from noisylabels.flagutil import (define_embed_norm, define_finite_float, define_img_dim, define_num_ref,
                                  run_tool)

from cleannet.model_config import ORIGINAL_DEFAULTS
from cleannet.choices import CLASS_SCORES, DECISIONS, DEFAULT_CLASS_SCORE, INFERENCE_MODES, OUTPUT_FORMATS

if TYPE_CHECKING:  # imported for the type hints only: numpy, then the tool's modules, load after the flag checks
    import numpy as np

    from cleannet.calibration import Calibration
    from cleannet.decision import RelativeDecision, ThresholdDecision
    from cleannet.numpy_model import NumpyCleanNet
    from cleannet.scoring import ClassEmbeddingScorer, CrossClassScores


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """inference.py's settings (every field is the flag of the same name, see define_flags)."""
    data_dir: str = "./data/"
    image_feature_list: str = "./data/input_tsv.tsv"
    class_list: str = "./data/classes.txt"
    checkpoint_dir: str = "./runs/"
    output_file: str = "./runs/pred.txt"
    img_dim: int | None = None  # None: the checkpoint's (checkpoints.with_checkpoint_model_config)
    num_ref: int | None = None
    batch_size: int = 64
    val_sim_thres: float = 0.1
    embed_norm: str | None = None
    mode: str = "inference"
    num_samples: int = -1
    output_format: str = "plain"
    output_weights: str | None = None
    chunk_rows: int = 4096
    decision: str = "threshold"
    class_score: str | None = None  # None: the calibration's (--decision=relative), else DEFAULT_CLASS_SCORE
    calibrate_threshold: bool = False

    @property
    def limit(self) -> int | None:
        """The most rows to score (--num_samples), None for all."""
        return None if self.num_samples == -1 else self.num_samples


def define_flags() -> None:
    """The original inference.py's flags (names and defaults), then the port's additions."""
    D = InferenceConfig()
    flags.DEFINE_string("data_dir", D.data_dir, "Data directory containing ref.npy (and val.npy for --mode=val).")
    flags.DEFINE_string("image_feature_list", D.image_feature_list,
                        "Image feature list tsv, columns are: [key, url, class_name, feature] or "
                        "[key, class_name, feature]")
    flags.DEFINE_string("class_list", D.class_list, "List of class name.")
    flags.DEFINE_string("checkpoint_dir", D.checkpoint_dir, "Directory to keep checkpoints and logs.")
    flags.DEFINE_string("output_file", D.output_file, "File path to output prediction.")
    define_img_dim(ORIGINAL_DEFAULTS["img_dim"])
    define_num_ref(ORIGINAL_DEFAULTS["num_ref"])
    flags.DEFINE_integer("batch_size", D.batch_size, "Batch size.", lower_bound=1)
    define_finite_float("val_sim_thres", D.val_sim_thres, "Similarity threshold for validation (a cosine, in [-1, 1]).",
                        lower_bound=-1.0, upper_bound=1.0)
    define_embed_norm(ORIGINAL_DEFAULTS["embed_norm"])
    flags.DEFINE_enum("mode", D.mode, list(INFERENCE_MODES),
                      "inference|val|calibrate (calibrate: choose the relative decision's margin on val.npy and "
                      "write calibration.json into --checkpoint_dir).")
    flags.DEFINE_integer("num_samples", D.num_samples, "Number of samples to infer. -1 indicates evaluating all data",
                         lower_bound=-1)
    # Additions of the port.
    flags.DEFINE_enum("output_format", D.output_format, list(OUTPUT_FORMATS),
                      "plain: one similarity per line (the original); tsv / jsonl: key, url, class_name, "
                      "similarity, verdict (under --decision), best_other_class, best_other_similarity, "
                      "margin (class_score minus best_other_similarity), suggested_class, class_score (the "
                      "labelled class's score on best_other_similarity's scale, see --class_score).")
    flags.DEFINE_string("output_weights", D.output_weights,
                        "Also write sample weights for classifier training to this TSV (--mode=inference): "
                        "key, class_name, soft weight max(0, cos), hard weight = the verdict under --decision.")
    flags.DEFINE_integer("chunk_rows", D.chunk_rows, "TSV rows parsed and scored per chunk (--mode=inference).",
                         lower_bound=1)
    flags.DEFINE_enum("decision", D.decision, list(DECISIONS),
                      "threshold: label correct when similarity >= --val_sim_thres (the paper's). relative: label "
                      "wrong when another class is closer than the labelled class by more than the margin in "
                      "--checkpoint_dir/calibration.json (written by train.py for best/, or --mode=calibrate).")
    flags.DEFINE_enum("class_score", D.class_score, list(CLASS_SCORES),
                      "How a sample is compared with every class (the cross-class columns, --decision=relative, "
                      "--mode=calibrate). references: soft nearest reference of the class, in CleanNet's query "
                      "embedding; embedding: cosine to the class embedding (CleanNet's similarity); neighbours: "
                      "the share of the sample's nearest samples of --data_dir/all.npy carrying the class. "
                      "Default: with --decision=relative the one calibration.json was calibrated with, "
                      "else %s." % DEFAULT_CLASS_SCORE)
    flags.DEFINE_bool("calibrate_threshold", D.calibrate_threshold,
                      "--mode=calibrate: also choose a similarity threshold for the relative decision (kept "
                      "only when it lowers the error on val.npy).")
    flags.register_multi_flags_validator(
        ["output_weights", "mode"], lambda v: v["output_weights"] is None or v["mode"] == "inference",
        message="--output_weights is written in --mode=inference only")


FLAGS = flags.FLAGS


def inference_config_from_flags(flag_values: flags.FlagValues = FLAGS) -> InferenceConfig:
    """The config of parsed absl flags; --img_dim, --num_ref, --embed_norm left out are None
    (the checkpoint's values)."""
    from cleannet.model_config import given_flags

    values = {field.name: flag_values[field.name].value for field in dataclasses.fields(InferenceConfig)}
    values.update(given_flags(flag_values))
    return InferenceConfig(**values)


def load_model(checkpoint_dir: str, img_dim: int, num_ref: int, embed_norm: str) -> tuple[NumpyCleanNet, int, str]:
    """The latest checkpoint in checkpoint_dir as a NumPy CleanNet (no TensorFlow). Returns (model, step, path)."""
    from cleannet.checkpoints import load_inference_model

    model, step, path = load_inference_model(checkpoint_dir, img_dim, num_ref, embed_norm)
    logging.info("Successfully loaded %s at global step = %d.", path, step)
    return model, step, path


def calibrate_command(config: InferenceConfig) -> str:
    """The command that writes the calibration for this --checkpoint_dir, --data_dir and --class_score."""
    return "inference.py --mode=calibrate --checkpoint_dir=%s --data_dir=%s --class_score=%s" % (
        config.checkpoint_dir, config.data_dir, config.class_score or DEFAULT_CLASS_SCORE)


def make_decision(config: InferenceConfig,
                  checkpoint_path: str) -> tuple[ThresholdDecision | RelativeDecision, str]:
    """The --decision (ThresholdDecision(--val_sim_thres) or the calibrated RelativeDecision) and
    the class score its cross-class scores are computed with: --class_score when given, else
    the calibration's (relative) or DEFAULT_CLASS_SCORE (threshold)."""
    from cleannet.calibration import read_calibration
    from cleannet.decision import ThresholdDecision

    if config.decision == "threshold":
        return ThresholdDecision(config.val_sim_thres), config.class_score or DEFAULT_CLASS_SCORE
    # Without --class_score the calibration's (train.py --recipe=robust calibrates with neighbours).
    calibration = read_calibration(config.checkpoint_dir, checkpoint_path, config.class_score,
                                   calibrate_command(config))
    logging.info("Relative decision: label wrong when margin < %.6g%s (calibrated on %d val samples).",
                 calibration.min_margin, "" if calibration.threshold is None else
                 " or similarity < %.6g" % calibration.threshold, calibration.val_samples)
    return calibration.decision(), calibration.class_score


def score(config: InferenceConfig, scorer: ClassEmbeddingScorer, features: np.ndarray, class_ids: np.ndarray,
          cross_class: bool) -> np.ndarray | CrossClassScores:
    """CrossClassScores when cross_class (every class compared), else similarities [n]. Every row is scored
    (the last batch may be partial)."""
    if cross_class:
        return scorer.score_against_all(features, class_ids, config.class_score, batch_size=config.batch_size)
    return scorer.score(features, class_ids, batch_size=config.batch_size)


def check_inputs_exist(config: InferenceConfig) -> None:
    """Fails fast, before the model loads, when an input this run reads is missing."""
    needed = [("--data_dir", os.path.join(config.data_dir, "ref.npy"))]
    if config.mode in ("val", "calibrate"):
        needed.append(("--data_dir", os.path.join(config.data_dir, "val.npy")))
    if config.mode == "inference":
        needed += [("--image_feature_list", config.image_feature_list), ("--class_list", config.class_list)]
    for flag, path in needed:
        if not os.path.isfile(path):
            raise InputError("file not found", path=path, field=flag)
    if not os.path.isdir(config.checkpoint_dir):
        raise InputError("checkpoint directory not found", path=config.checkpoint_dir, field="--checkpoint_dir")
    if not os.path.isfile(os.path.join(config.checkpoint_dir, "checkpoint")):
        raise InputError("no checkpoint found (expected a 'checkpoint' state file and ckpt-N.index)",
                         path=config.checkpoint_dir, field="--checkpoint_dir")


def refuse_outputs_over_inputs(config: InferenceConfig) -> None:
    """An output path naming a file this run reads is refused (it would destroy the input)."""
    from noisylabels.fileio import refuse_output_equal_to_inputs, tf_checkpoint_files

    data_files = ["ref.npy"] + (["val.npy"] if config.mode == "val" else [])
    inputs = [("--class_list", config.class_list)]
    inputs += [("a file of --data_dir", os.path.join(config.data_dir, name)) for name in data_files]
    if config.mode == "inference":
        inputs.append(("--image_feature_list", config.image_feature_list))
    refuse_output_equal_to_inputs({"output_file": config.output_file, "output_weights": config.output_weights},
                                  inputs + tf_checkpoint_files(config.checkpoint_dir))


def make_scorer(config: InferenceConfig, model: NumpyCleanNet, reference: np.ndarray) -> ClassEmbeddingScorer:
    """The scorer of config.class_score; "neighbours" reads its bank, --data_dir/all.npy."""
    from cleannet import datafiles
    from cleannet.scoring import ClassEmbeddingScorer, check_bank

    bank = None
    if config.class_score == "neighbours":
        bank_path = os.path.join(config.data_dir, "all.npy")
        bank = datafiles.load_all(bank_path, config.img_dim)
        datafiles.check_class_ids(bank[1], reference.shape[0], bank_path)
        check_bank(bank[1], reference.shape[0], bank_path)
    return ClassEmbeddingScorer(model, reference, bank=bank)


def run_inference(config: InferenceConfig, model: NumpyCleanNet, reference: np.ndarray,
                  decision: ThresholdDecision | RelativeDecision) -> int:
    """Streams --image_feature_list and writes one result per input line. Returns the count."""
    import contextlib

    from cleannet.outputs import ResultWriter, WeightWriter
    from cleannet.scoring import ClassEmbeddingScorer
    from cleannet import datafiles, tsv_reader
    from noisylabels.fileio import atomic_open
    from noisylabels.progress import Progress

    class_names = tsv_reader.read_class_list(config.class_list)
    if len(class_names) != reference.shape[0]:
        raise InputError("has %d classes but ref.npy has %d" % (len(class_names), reference.shape[0]),
                         path=config.class_list)
    class_to_id = {name: i for i, name in enumerate(class_names)}
    scorer = make_scorer(config, model, reference)
    limit = config.limit
    cross_class = config.output_format != "plain" or decision.needs_other_classes
    count = 0
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(Progress(total=limit, unit="samples", desc="inference"))
        out = stack.enter_context(atomic_open(config.output_file, "w"))
        writer = ResultWriter(out, config.output_format, decision, class_names if cross_class else None)
        weights = None
        if config.output_weights:
            weights = WeightWriter(stack.enter_context(atomic_open(config.output_weights, "w")), decision)
        for chunk in tsv_reader.iter_tsv_chunks(config.image_feature_list, "all", class_to_id,
                                                img_dim=config.img_dim, chunk_rows=config.chunk_rows,
                                                class_list_path=config.class_list):
            n = len(chunk.class_ids) if limit is None else min(len(chunk.class_ids), limit - count)
            datafiles.refuse_negative_for_log(chunk.features[:n], config.image_feature_list, config.embed_norm,
                                              chunk.line_numbers[:n])
            sims = score(config, scorer, chunk.features[:n], chunk.class_ids[:n], cross_class)
            writer.write(sims, chunk.keys[:n], chunk.urls[:n] if chunk.urls else None, chunk.class_names[:n])
            if weights is not None:
                weights.write(sims, chunk.keys[:n], chunk.class_names[:n])
            count += n
            progress.update(n)
            if limit is not None and count >= limit:
                break
    return count


def load_validation(config: InferenceConfig, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """val.npy as (features [n, h], class ids [n], vlabels [n]), class ids checked against ref.npy."""
    from cleannet import datafiles

    val_path = os.path.join(config.data_dir, "val.npy")
    features, class_ids, vlabels = datafiles.load_verified(val_path, config.img_dim)
    datafiles.check_class_ids(class_ids, reference.shape[0], val_path)
    datafiles.refuse_negative_for_log(features, val_path, config.embed_norm)
    return features, class_ids, vlabels


def run_validation(config: InferenceConfig, model: NumpyCleanNet, reference: np.ndarray,
                   decision: ThresholdDecision | RelativeDecision) -> tuple[float, int]:
    """Scores every row of val.npy (the first --num_samples), writes one result per row, returns
    (accuracy, rows scored)."""
    import numpy as np

    from cleannet.decision import verdicts_of
    from cleannet.outputs import ResultWriter
    from cleannet.scoring import ClassEmbeddingScorer
    from cleannet import tsv_reader
    from noisylabels.fileio import atomic_open

    features, class_ids, vlabels = load_validation(config, reference)
    usable = len(features) if config.limit is None else min(len(features), config.limit)
    if usable < len(features):
        logging.info("Scoring %d of %d val rows (--num_samples=%d).", usable, len(features), config.num_samples)
    all_names = None
    if os.path.exists(config.class_list):
        all_names = tsv_reader.read_class_list(config.class_list)
    cross_class = decision.needs_other_classes or (config.output_format != "plain" and all_names is not None)
    scores = score(config, make_scorer(config, model, reference), features[:usable], class_ids[:usable],
                   cross_class)
    correct = verdicts_of(decision, scores) == vlabels[:usable]
    names = None
    if config.output_format != "plain" and all_names is not None:
        names = [all_names[i] for i in class_ids[:usable]]
    class_list = all_names if cross_class and config.output_format != "plain" else None
    with atomic_open(config.output_file, "w") as out:
        ResultWriter(out, config.output_format, decision, class_list).write(
            scores, keys=[str(i) for i in range(usable)], class_names=names)
    return float(np.mean(correct)) if usable else float("nan"), usable


def run_calibration(config: InferenceConfig, model: NumpyCleanNet, reference: np.ndarray,
                    checkpoint_path: str) -> Calibration:
    """Calibrates the relative decision on every row of val.npy; writes calibration.json."""
    from cleannet.calibration import calibrate_model, check_calibration_set, write_calibration

    features, class_ids, vlabels = load_validation(config, reference)
    if reference.shape[0] < 2 or len(features) == 0:
        raise InputError("calibration needs val.npy rows and at least two classes in ref.npy",
                         path=os.path.join(config.data_dir, "val.npy"))
    check_calibration_set(class_ids, vlabels, os.path.join(config.data_dir, "val.npy"))
    bank = make_scorer(config, model, reference).bank
    calibration = calibrate_model(model, reference, features, class_ids, vlabels, checkpoint_path,
                                  config.class_score, config.calibrate_threshold, config.batch_size, bank=bank)
    path = write_calibration(config.checkpoint_dir, calibration)
    logging.info("Wrote %s: class score %s, min_margin %.6g, threshold %s, val error %.6f on %d samples.",
                 path, calibration.class_score, calibration.min_margin, calibration.threshold,
                 calibration.val_error, calibration.val_samples)
    return calibration


def infer(config: InferenceConfig) -> None:
    """Runs the --mode of config: writes its output file(s) and prints what the tool prints."""
    refuse_outputs_over_inputs(config)
    check_inputs_exist(config)
    from cleannet import datafiles
    from cleannet.checkpoints import with_checkpoint_model_config

    config = with_checkpoint_model_config(config)

    ref_path = os.path.join(config.data_dir, "ref.npy")
    reference = datafiles.load_ref(ref_path, config.img_dim, config.num_ref)
    datafiles.refuse_negative_for_log(reference.reshape(len(reference), -1), ref_path, config.embed_norm)
    model, _, checkpoint_path = load_model(config.checkpoint_dir, config.img_dim, config.num_ref, config.embed_norm)
    if config.mode == "calibrate":
        config = dataclasses.replace(config, class_score=config.class_score or DEFAULT_CLASS_SCORE)
        calibration = run_calibration(config, model, reference, checkpoint_path)
        print("min_margin = %.6g, val error = %.6f" % (calibration.min_margin, calibration.val_error))
        return
    decision, class_score = make_decision(config, checkpoint_path)
    config = dataclasses.replace(config, class_score=class_score)
    if config.mode == "inference":
        logging.info("Start inference...")
        count = run_inference(config, model, reference, decision)
        logging.info("Wrote %d predictions to %s.", count, config.output_file)
        if config.output_weights:
            logging.info("Wrote %d sample weights (hard weight: %s decision) to %s.", count, decision.name,
                         config.output_weights)
    else:
        logging.info("Start validate once...")
        acc, count = run_validation(config, model, reference, decision)
        logging.info("acc = %.6f (%d samples)", acc, count)
        print("acc = %.6f" % acc)


def main(argv: list[str]) -> None:
    del argv
    infer(inference_config_from_flags(FLAGS))


def run() -> None:
    """Console entry point."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
