"""CleanNet end to end on data that ships with scikit-learn: the handwritten digits.

    python -m cleannet.quickstart [--work_dir=./quickstart] [--noise_rate=0.3]
    cleannet-quickstart ...          (the same, installed by `pip install .`)

What it does, through the same public tools a user runs:
1. Takes scikit-learn's 1797 digits (8×8 images, 64 pixel values each, used as the
   feature vector), corrupts a known share of the training labels (--noise_rate) to a
   different class, and writes the files of docs/originals.md#cleannet-files-and-formats: classes.txt, a verified TSV
   (key, class_name, vlabel, feature) for train and val, an all-samples TSV, and a test
   TSV in the all-samples layout whose truth (label correct or not) is known.
2. Keeps verification labels for only half the classes (digits 0-4) with
   cleannet.tools.heldout_train_data, as in the paper's transfer-learning experiments.
3. cleannet.tools.convert_data → train.npy, val.npy, all.npy; cleannet.tools.find_reference
   → ref.npy. (Each tool runs as `python -m cleannet.tools.NAME`, so the quickstart works
   from a checkout and after `pip install .` alike.)
4. cleannet.tools.train --recipe=robust (its progress shown as it trains; TensorBoard logs
   under WORK_DIR/train/log), `inference.py --mode=calibrate --class_score=neighbours` (the
   relative decision's margin, chosen on val.npy), then inference.py on the test TSV: the
   recommended pair of docs/decisions.md.
5. Prints the label-noise detection error on the test samples of the classes with
   verification labels and of those without, next to the error of trusting every label,
   for both decisions: the paper's threshold (cos >= 0.1) and the relative one.
6. Scores the training samples with `inference.py --output_weights` and trains a softmax
   classifier (train_classifier.py) on them without weights, with the paper's soft weights
   max(0, cos) and with hard weights (threshold and relative decisions), printing the test
   accuracies (on the true labels) side by side.

The settings (--noise_rate, --n_step, --num_ref, --seed) are recorded in
WORK_DIR/quickstart_settings.json, the quickstart's ownership marker (its tool name, a
format version and the settings: noisylabels/state_files.py). A re-run with the same
settings reuses the trained model; with other settings it first deletes what an earlier
quickstart created there (the names in CREATED, nothing else), so it never reports a stale
model. Only that marker proves a work directory is the quickstart's: files of those names
without it (an empty quickstart.log left by `| tee`, a user's data/) are refused, never
deleted. One quickstart per work directory at a time (WORK_DIR/quickstart.lock).
"""

import atexit
import json
import os
import re
import subprocess
import sys
import time
from typing import TypedDict

import numpy as np
from absl import flags, logging

from noisylabels.console import load_tensorflow
from noisylabels import flagutil
from noisylabels.errors import InputError
from noisylabels.run_record import FileLock
from noisylabels.state_files import delete_owned, read_marker, write_marker

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def define_flags() -> None:
    """The quickstart's flags (defined when it runs, so that other tools can import this module)."""
    flags.DEFINE_string("work_dir", "./quickstart", "Where the data, model, logs and predictions go.")
    flagutil.define_finite_float("noise_rate", 0.3, "Share of labels replaced by a wrong class, in [0, 1).",
                        lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_integer("n_step", 3000, "Training steps.", lower_bound=1)
    flags.DEFINE_integer("num_ref", 8, "Reference vectors per class (k-means centres).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed for the split and the label noise.", lower_bound=0)


VERIFIED_CLASSES = range(5)  # digits 0-4 keep verification labels; 5-9 have none
THRESHOLD = 0.1  # the paper's (and inference.py's default --val_sim_thres)
# The recommended pair (docs/decisions.md): train.py --recipe=robust, inference.py --decision=relative.
RECIPE = "robust"
EMBED_NORM = "l2norm"  # what --recipe=robust trains with; inference.py is told it
CLASS_SCORE = "neighbours"  # what --recipe=robust calibrates with
SETTINGS_FILE = "quickstart_settings.json"  # the quickstart's ownership marker
LOG_FILE = "quickstart.log"
LOCK_FILE = "quickstart.lock"
TOOL = "cleannet.quickstart"
# Everything the quickstart writes in its work dir (test_predictions.txt: earlier versions).
CREATED = ("tsv", "data", "train", "test_predictions.tsv", "test_predictions.txt", "train_predictions.txt",
           "train_weights.tsv", "train_weights_relative.tsv", "report_data", "report", LOG_FILE, SETTINGS_FILE)
PROGRESS_LINE = re.compile(r"\] (step \d+: .*)$")  # train.py's periodic "step N: ..." log lines


def class_name(digit: int) -> str:
    return "digit_%d" % digit


def make_split(num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train / val / test parts of the digits, shuffled: 60% / 15% / 25%."""
    order = np.random.default_rng(seed).permutation(num_samples)
    n_train, n_val = int(0.6 * num_samples), int(0.15 * num_samples)
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]


def corrupt_labels(labels: np.ndarray, noise_rate: float, num_classes: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Replaces a `noise_rate` share of labels by a different class, uniformly."""
    noisy = labels.copy()
    flip = rng.random(len(labels)) < noise_rate
    shift = rng.integers(1, num_classes, size=len(labels))
    noisy[flip] = (labels[flip] + shift[flip]) % num_classes
    return noisy


def feature_text(row: np.ndarray) -> str:
    return ",".join("%g" % v for v in row)


def noisy_digits(seed: int, noise_rate: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The quickstart's data: (features float32 [N, 64], true labels [N], noisy labels [N],
    (train, val, test) index arrays)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    features, labels = digits.data.astype(np.float32), digits.target.astype(np.int64)
    noisy = corrupt_labels(labels, noise_rate, 10, np.random.default_rng(seed))
    return features, labels, noisy, make_split(len(labels), seed)


def write_tsvs(work_dir: str, seed: int, noise_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Writes the quickstart's input files; returns the test set's (label correct?, noisy class, true class)."""
    features, labels, noisy, (train, val, test) = noisy_digits(seed, noise_rate)
    tsv_dir = os.path.join(work_dir, "tsv")
    os.makedirs(tsv_dir, exist_ok=True)
    with open(os.path.join(tsv_dir, "classes.txt"), "w") as f:
        f.write("".join(class_name(d) + "\n" for d in range(10)))
    with open(os.path.join(tsv_dir, "heldout_classes.tsv"), "w") as f:
        f.write("".join("%s\t%d\n" % (class_name(d), int(d in VERIFIED_CLASSES)) for d in range(10)))
    for split, index in (("train_all_classes", train), ("val", val)):
        with open(os.path.join(tsv_dir, split + ".tsv"), "w") as f:
            for i in index:
                if split == "val" and noisy[i] not in VERIFIED_CLASSES:
                    continue
                f.write("img%04d\t%s\t%d\t%s\n" % (i, class_name(noisy[i]), int(noisy[i] == labels[i]),
                                                    feature_text(features[i])))
    with open(os.path.join(tsv_dir, "all.tsv"), "w") as f:
        for i in train:
            f.write("img%04d\t%s\t%s\n" % (i, class_name(noisy[i]), feature_text(features[i])))
    with open(os.path.join(tsv_dir, "test.tsv"), "w") as f:
        for i in test:
            f.write("img%04d\t%s\t%s\n" % (i, class_name(noisy[i]), feature_text(features[i])))
    with open(os.path.join(tsv_dir, "test_true.tsv"), "w") as f:  # true labels, for classifier accuracy
        for i in test:
            f.write("img%04d\t%s\t%s\n" % (i, class_name(labels[i]), feature_text(features[i])))
    return (noisy[test] == labels[test]), noisy[test], labels[test]


def hold_work_dir(work_dir: str) -> FileLock:
    """Creates work_dir and locks it for the life of this process (one quickstart per work
    dir at a time; a second is refused with one line naming the lock)."""
    os.makedirs(work_dir, exist_ok=True)
    lock = FileLock(os.path.join(work_dir, LOCK_FILE), remedy="wait for it to end or pick another --work_dir",
                    remove_on_release=True)
    lock.acquire()
    atexit.register(lock.release, remove=True)
    return lock


def prepare_work_dir(work_dir: str, settings: dict) -> str:
    """Makes work_dir ready for a run with `settings` (a dict); returns what it did.

    Same recorded settings: "reuse". Other settings recorded in the quickstart's marker:
    the names in CREATED are deleted, "fresh". Names of CREATED without that marker: refused
    (they may be someone else's; an empty quickstart.log proves nothing), InputError.
    """
    os.makedirs(work_dir, exist_ok=True)
    settings_path = os.path.join(work_dir, SETTINGS_FILE)
    present = [name for name in CREATED if name != SETTINGS_FILE and os.path.lexists(os.path.join(work_dir, name))]
    proof = read_marker(settings_path, TOOL, "remove it, or pick another --work_dir")
    outcome = "new"
    if proof is None and present:
        raise InputError("holds %s, but no %s of an earlier quickstart proves they are the quickstart's; nothing "
                         "was deleted: remove them or pick another --work_dir" % (", ".join(present), SETTINGS_FILE),
                         path=work_dir, field="--work_dir")
    if proof is not None:
        outcome = "reuse" if proof.settings == settings else "fresh"
    if outcome == "fresh":
        delete_owned([os.path.join(work_dir, name) for name in present], proof)
    write_marker(settings_path, TOOL, settings)
    return outcome


def _show_progress(text, live):
    if live:
        sys.stdout.write("\r  " + text[:100].ljust(100))
    else:
        sys.stdout.write("  " + text + "\n")
    sys.stdout.flush()


def run_tool(args: list[str], log: str, show_progress: bool = False) -> None:
    """Runs a project tool as a user would, its output appended to `log`.

    With show_progress, the tool's "step N: ..." lines are shown as they come (redrawn on
    one line on a terminal).
    """
    command = [sys.executable] + args
    print("$ python " + " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in command[1:]),
          flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    live = sys.stdout.isatty()
    shown = False
    with open(log, "a") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                   text=True)
        for line in process.stdout:
            out.write(line)
            match = PROGRESS_LINE.search(line.rstrip("\n")) if show_progress else None
            if match:
                _show_progress(match.group(1), live)
                shown = True
        returncode = process.wait()
    if shown and live:
        sys.stdout.write("\n")
    if returncode != 0:
        with open(log) as f:
            tail = f.read().splitlines()[-15:]
        sys.exit("quickstart: step failed (exit %d); last lines of %s:\n%s" % (returncode, log, "\n".join(tail)))


def tool(module: str) -> list[str]:
    """The arguments that run a tool module (`python -m cleannet.tools.NAME`): importable from a
    checkout and from an installed package alike (a path like util/NAME.py exists only in a checkout)."""
    return ["-m", module]


def prepare_data(work_dir: str, log: str, num_ref: int) -> None:
    """heldout_train_data, convert_data (train, val, all), find_reference."""
    tsv_dir, data_dir = os.path.join(work_dir, "tsv"), os.path.join(work_dir, "data")
    classes = os.path.join(tsv_dir, "classes.txt")
    run_tool([*tool("cleannet.tools.heldout_train_data"),
              "--heldout_class_list=" + os.path.join(tsv_dir, "heldout_classes.tsv"),
              "--input_file=" + os.path.join(tsv_dir, "train_all_classes.tsv"),
              "--output_file=" + os.path.join(tsv_dir, "train.tsv")], log)
    for split in ("train", "val", "all"):
        run_tool([*tool("cleannet.tools.convert_data"), "--split=" + split, "--class_list=" + classes,
                  "--data_path=" + os.path.join(tsv_dir, split + ".tsv"), "--output_dir=" + data_dir], log)
    run_tool([*tool("cleannet.tools.find_reference"), "--class_list=" + classes,
              "--input_npy=" + os.path.join(data_dir, "all.npy"), "--output_dir=" + data_dir,
              "--num_ref=%d" % num_ref, "--img_dim=64"], log)


def model_args(work_dir: str, num_ref: int) -> list[str]:
    """inference.py's flags naming the quickstart's data, classes and best model."""
    return ["--data_dir=" + os.path.join(work_dir, "data"),
            "--class_list=" + os.path.join(work_dir, "tsv", "classes.txt"),
            "--checkpoint_dir=" + os.path.join(work_dir, "train", "checkpoints", "best"),
            "--img_dim=64", "--num_ref=%d" % num_ref, "--embed_norm=" + EMBED_NORM]


def train_and_calibrate(work_dir: str, log: str, num_ref: int, n_step: int) -> None:
    """train.py (progress shown), then inference.py --mode=calibrate on the best model."""
    model_dir = os.path.join(work_dir, "train")
    run_tool([*tool("cleannet.tools.train"), "--data_dir=" + os.path.join(work_dir, "data"),
              "--checkpoint_dir=" + os.path.join(model_dir, "checkpoints"),
              "--log_dir=" + os.path.join(model_dir, "log"),
              "--img_dim=64", "--num_ref=%d" % num_ref, "--n_step=%d" % n_step, "--val_interval=500",
              "--log_interval=250", "--lr_update=%d" % max(1, n_step * 2 // 3), "--val_batch_size=32",
              "--recipe=" + RECIPE],
             log, show_progress=True)
    run_tool([*tool("cleannet.tools.inference"), "--mode=calibrate", "--class_score=" + CLASS_SCORE]
             + model_args(work_dir, num_ref), log)


def read_verdicts(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """inference.py's tsv output → (similarity float64 [n], verdict bool [n], suggested class names [n])."""
    with open(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    return (np.array([float(r[3]) for r in rows]), np.array([r[4] == "1" for r in rows], bool),
            [r[8] for r in rows])


def score_test(work_dir: str, log: str, num_ref: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scores the test TSV under the relative decision (tsv output); returns read_verdicts' triple
    with the threshold verdicts in place of the similarities: (threshold, relative, suggested)."""
    from cleannet.decision import ThresholdDecision

    predictions = os.path.join(work_dir, "test_predictions.tsv")
    run_tool([*tool("cleannet.tools.inference"), "--mode=inference",
              "--image_feature_list=" + os.path.join(work_dir, "tsv", "test.tsv"),
              "--output_file=" + predictions, "--output_format=tsv", "--decision=relative"]
             + model_args(work_dir, num_ref), log)
    similarity, relative, suggested = read_verdicts(predictions)
    return ThresholdDecision(THRESHOLD).verdicts(similarity).astype(bool), relative, suggested


def run_detection(work_dir: str, settings: dict, log: str) -> dict[str, np.ndarray]:
    """The whole pipeline up to the test verdicts. Returns a dict of [n_test] arrays:
    label_correct, verified (class has verification labels), threshold and relative
    verdicts (True = label judged correct), suggested (class name or ""), true_class (name)."""
    truth, test_classes, true_classes = write_tsvs(work_dir, settings["seed"], settings["noise_rate"])
    prepare_data(work_dir, log, settings["num_ref"])
    train_and_calibrate(work_dir, log, settings["num_ref"], settings["n_step"])
    threshold, relative, suggested = score_test(work_dir, log, settings["num_ref"])
    return dict(label_correct=truth, verified=np.isin(test_classes, list(VERIFIED_CLASSES)), threshold=threshold,
                relative=relative, suggested=np.array(suggested), true_class=np.array(
                    [class_name(c) for c in true_classes]))


def detection_error(verdicts: np.ndarray, label_correct: np.ndarray) -> float:
    """Share of samples whose verdict (True = label judged correct) disagrees with the truth."""
    return float(np.mean(np.asarray(verdicts, bool) != np.asarray(label_correct, bool)))


def print_detection_table(result: dict[str, np.ndarray]) -> None:
    print()
    print("Label-noise detection error on the test samples:")
    print("| classes | samples | label noise (error of trusting every label) | threshold cos >= %g (paper's decision) "
          "| relative (calibrated margin, recommended) |" % THRESHOLD)
    print("|---|---|---|---|---|")
    truth = result["label_correct"]
    for name, mask in (("with verification labels (0-4)", result["verified"]),
                       ("without verification labels (5-9)", ~result["verified"])):
        print("| %s | %d | %.3f | %.3f | %.3f |" % (name, int(mask.sum()), float(np.mean(~truth[mask])),
                                                   detection_error(result["threshold"][mask], truth[mask]),
                                                   detection_error(result["relative"][mask], truth[mask])))
    suggested = result["suggested"] != ""
    right = int(np.sum(result["suggested"][suggested] == result["true_class"][suggested]))
    print("Relative decision: %d labels judged wrong got a suggested class; %d of them (%.0f%%) are the true class."
          % (int(suggested.sum()), right, 100.0 * right / max(1, int(suggested.sum()))))


def print_classifier_table(work_dir: str, log: str, settings: dict) -> None:
    """Sample weights for the training samples under both decisions, and the classifier table."""
    tsv_dir = os.path.join(work_dir, "tsv")
    weight_files = {}
    for decision, name in (("threshold", "train_weights.tsv"), ("relative", "train_weights_relative.tsv")):
        weight_files[decision] = os.path.join(work_dir, name)
        run_tool([*tool("cleannet.tools.inference"), "--mode=inference",
                  "--image_feature_list=" + os.path.join(tsv_dir, "all.tsv"),
                  "--output_file=" + os.path.join(work_dir, "train_predictions.txt"), "--decision=" + decision,
                  "--output_weights=" + weight_files[decision]] + model_args(work_dir, settings["num_ref"]), log)
    from cleannet.classifier.training import train_classifier

    logging.set_verbosity(logging.WARNING)  # the classifier's per-epoch progress lines
    print()
    print("A softmax classifier trained on the noisy training labels, test accuracy on the true labels:")
    print("| sample weights | test accuracy |")
    print("|---|---|")
    for weighting, decision, label in (("none", "threshold", "none (every sample 1)"),
                                       ("soft", "threshold", "soft, max(0, cos)"),
                                       ("hard", "threshold", "hard, 1[cos >= %g]" % THRESHOLD),
                                       ("hard", "relative", "hard, relative decision")):
        accuracy = train_classifier(os.path.join(tsv_dir, "all.tsv"), os.path.join(tsv_dir, "classes.txt"),
                                    test_tsv=os.path.join(tsv_dir, "test_true.tsv"),
                                    weights_file=weight_files[decision],
                                    weighting=weighting, epochs=30, learning_rate=0.01, seed=settings["seed"])
        print("| %s | %.3f |" % (label, accuracy))


class QuickstartSettings(TypedDict):
    """What a run's results depend on (recorded in SETTINGS_FILE as JSON; the work dir is where they go)."""

    noise_rate: float
    n_step: int
    num_ref: int
    seed: int
    recipe: str


def settings_from_flags() -> QuickstartSettings:
    return QuickstartSettings(noise_rate=FLAGS.noise_rate, n_step=FLAGS.n_step, num_ref=FLAGS.num_ref,
                              seed=FLAGS.seed, recipe=RECIPE)


def write_review_page(work_dir: str, log: str, settings: QuickstartSettings) -> None:
    """The training samples' review page and a verification queue of 100 (util/report.py):
    their verdicts under the relative decision, the digits drawn as 32x32 images for the
    thumbnails. Everything goes under WORK_DIR/report_data and WORK_DIR/report."""
    import cv2

    from sklearn.datasets import load_digits

    data_dir, report_dir = os.path.join(work_dir, "report_data"), os.path.join(work_dir, "report")
    os.makedirs(os.path.join(data_dir, "images"), exist_ok=True)
    images = load_digits().images
    with open(os.path.join(data_dir, "images.tsv"), "w") as f:
        for line in open(os.path.join(work_dir, "tsv", "all.tsv")):
            key, name = line.split("\t", 2)[:2]
            pixels = (255 - images[int(key[3:])] * 255 / 16).astype(np.uint8)
            cv2.imwrite(os.path.join(data_dir, "images", key + ".png"),
                        cv2.resize(pixels, (32, 32), interpolation=cv2.INTER_NEAREST))
            f.write("%s\timages/%s.png\t%s\n" % (key, key, name))
    predictions = os.path.join(data_dir, "train_predictions.tsv")
    run_tool([*tool("cleannet.tools.inference"), "--mode=inference",
              "--image_feature_list=" + os.path.join(work_dir, "tsv", "all.tsv"), "--output_file=" + predictions,
              "--output_format=tsv", "--decision=relative"]
             + model_args(work_dir, settings["num_ref"]), log)
    run_tool([*tool("cleannet.tools.report"), "--predictions=" + predictions,
              "--class_list=" + os.path.join(work_dir, "tsv", "classes.txt"),
              "--image_list=" + os.path.join(data_dir, "images.tsv"),
              "--verified_list=" + os.path.join(work_dir, "tsv", "train.tsv"),
              "--calibration=" + os.path.join(work_dir, "train", "checkpoints", "best", "calibration.json"),
              "--output_dir=" + report_dir, "--queue=100", "--overwrite"], log)
    print()
    print("Review page of the training labels (open it in a browser): %s" % os.path.join(report_dir, "index.html"))
    print("Verification queue (fill it on the page, then util/merge_queue.py): %s"
          % os.path.join(report_dir, "queue.tsv"))


def main(argv: list[str]) -> None:
    del argv
    started = time.time()
    work_dir = os.path.abspath(FLAGS.work_dir)
    settings = settings_from_flags()
    hold_work_dir(work_dir)
    if prepare_work_dir(work_dir, settings) == "fresh":
        print("quickstart: new settings %s: started afresh in %s" % (json.dumps(settings, sort_keys=True), work_dir))
    log = os.path.join(work_dir, LOG_FILE)
    open(log, "w").close()
    load_tensorflow()  # the verdicts and the classifier run in this process: TensorFlow loads quietly
    result = run_detection(work_dir, settings, log)
    print_detection_table(result)
    print_classifier_table(work_dir, log, settings)
    write_review_page(work_dir, log, settings)
    print()
    print("Done in %.0f s. TensorBoard: tensorboard --logdir %s" % (time.time() - started,
                                                                    os.path.join(work_dir, "train", "log")))


def run() -> None:
    """Console entry point (cleannet-quickstart)."""
    define_flags()
    flagutil.run_tool(main)


if __name__ == "__main__":
    run()
