"""Label-noise detection error of CleanNet next to cleanlab, on a grid of noisy digits.

    pip install 'cleanlab>=2'          # or: pip install .[compare]
    nice -n 10 python bench/compare_cleanlab.py --seeds=0,1,2,3,4 --n_step=1000 [--rates=0.2,0.3,0.4]
        [--kinds=uniform,lookalike] [--work_dir=DIR] [--results=PART.json]
    python bench/compare_cleanlab.py --merge=PART1.json,PART2.json   # one table of runs made in parts

docs/decisions.md holds the table of the full grid (35 runs) and how it was run.

One run per setting (noise rate × noise kind × seed; at 30 % uniform noise also the pixels
scaled to [0, 1] besides the raw 0-16 values), each on scikit-learn's digits:
- noise: `uniform` flips a label to any other class; `lookalike` to one of one or two
  look-alike digits (LOOKALIKES: 1↔7, 3↔5↔8, 4↔9, ...);
- split as the quickstart's (60 % train, 15 % val, 25 % test, seeded); verification labels
  for the digits 0-4 only: train.npy = the train part labelled 0-4, val.npy = the val part
  labelled 0-4; all.npy = every sample with its noisy label; ref.npy = k-means centres
  of all.npy (util/find_reference.py's function);
- scored: every sample labelled 5-9 (the classes without verification labels) and the
  test part labelled 0-4 (held back from train.npy and val.npy);
- CleanNet trained in this process with the library train.py runs (cleannet.trainer.train):
  `paper` (train.py's defaults) judged by the paper's threshold (cos ≥ 0.1), and
  `robust` (--recipe=robust) judged by the relative decision, calibrated on val.npy as
  train.py does for the best model (its calibration.json);
- cleanlab 2.x: `find_label_issues` with out-of-sample probabilities from 5-fold
  cross-validated logistic regression on the standardised features of every sample.

Detection error = share of scored samples whose verdict (label correct or not) is wrong.
The table gives, per setting and group (classes with / without verification labels), the
mean, sd and worst seed of each method, and whether robust/relative meets the targets
(mean ≤ 0.75 × cleanlab's and worst ≤ cleanlab's worst without verification labels;
mean ≤ 0.5 × cleanlab's with them; sd ≤ 2 × cleanlab's). Exits 2 when cleanlab is absent.
"""

import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
NUM_CLASSES = 10
VERIFIED_CLASSES = tuple(range(5))
# Each digit's look-alikes (class-dependent noise flips a label to one of them, uniformly).
LOOKALIKES = {0: (6,), 1: (7,), 2: (3, 7), 3: (5, 8), 4: (9,), 5: (3, 6), 6: (0, 5), 7: (1, 2), 8: (3, 5), 9: (4, 7)}
GROUPS = (("without", False), ("with", True))
METHODS = ("paper/threshold", "robust/relative", "cleanlab")


def define_flags():
    """The script's flags (defined when it runs, so that tests can import it)."""
    flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds of the split and the label noise (one run each).")
    flags.DEFINE_list("rates", ["0.2", "0.3", "0.4"], "Noise rates.")
    flags.DEFINE_list("kinds", ["uniform", "lookalike"], "Noise kinds: uniform, lookalike.")
    flags.DEFINE_bool("scaled_row", True, "Also run 30 % uniform noise with the pixels scaled to [0, 1].")
    flags.DEFINE_bool("scaled_only", False, "Run only the scaled row (to split the grid over processes; --merge).")
    flags.DEFINE_integer("n_step", 3000, "CleanNet training steps.")
    flags.DEFINE_integer("num_ref", 8, "CleanNet reference vectors per class.")
    flags.DEFINE_string("work_dir", None, "Where the runs go (default: a temporary directory, removed).")
    flags.DEFINE_string("results", None, "Also write every run's errors to this JSON file.")
    flags.DEFINE_list("merge", [], "Only print the table of these --results files (runs made in parts).")


def corrupt(labels, noise_rate, kind, rng):
    """Noisy labels int64 [n]: a `noise_rate` share flipped, to any other class (uniform) or to a
    look-alike (LOOKALIKES)."""
    noisy = labels.copy()
    flip = rng.random(len(labels)) < noise_rate
    pick = rng.random(len(labels))
    if kind == "uniform":
        shift = 1 + np.minimum((pick * (NUM_CLASSES - 1)).astype(np.int64), NUM_CLASSES - 2)
        noisy[flip] = (labels[flip] + shift[flip]) % NUM_CLASSES
    elif kind == "lookalike":
        for i in np.flatnonzero(flip):
            targets = LOOKALIKES[int(labels[i])]
            noisy[i] = targets[min(int(pick[i] * len(targets)), len(targets) - 1)]
    else:
        raise ValueError("noise kind must be uniform or lookalike, got %r" % kind)
    return noisy


def make_setting(seed, noise_rate, kind, scaled):
    """The data of one run: dict of features float32 [N, 64], labels, noisy labels, and index
    arrays train / val (verified parts) and scored (what is judged)."""
    from sklearn.datasets import load_digits

    from cleannet.quickstart import make_split

    digits = load_digits()
    features = digits.data.astype(np.float32) / (16.0 if scaled else 1.0)
    labels = digits.target.astype(np.int64)
    noisy = corrupt(labels, noise_rate, kind, np.random.default_rng(seed))
    train, val, test = make_split(len(labels), seed)
    verified = np.isin(noisy, VERIFIED_CLASSES)
    scored = np.sort(np.concatenate([np.flatnonzero(~verified), test[verified[test]]]))
    return dict(features=features, labels=labels, noisy=noisy, train=train[verified[train]],
                val=val[verified[val]], scored=scored)


def write_data(data, data_dir, num_ref):
    """train.npy, val.npy, all.npy (every sample, grouped by class) and ref.npy in data_dir."""
    from cleannet.tools.find_reference import find_references
    from noisylabels.fileio import save_npy

    os.makedirs(data_dir, exist_ok=True)
    f, noisy, labels = data["features"], data["noisy"], data["labels"]
    for split in ("train", "val"):
        i = data[split]
        rows = np.column_stack([f[i], noisy[i], noisy[i] == labels[i]]).astype(np.float32)
        save_npy(os.path.join(data_dir, split + ".npy"), rows)
    order = np.argsort(noisy, kind="stable")
    save_npy(os.path.join(data_dir, "all.npy"), np.column_stack([f[order], noisy[order]]).astype(np.float32))
    save_npy(os.path.join(data_dir, "ref.npy"), find_references(f[order], noisy[order], NUM_CLASSES, num_ref))


def cleannet_verdicts(data, data_dir, run_dir, recipe):
    """Trains CleanNet with `recipe` and returns its verdicts (True = label judged correct) on the
    scored samples: the threshold decision for paper, the relative decision for robust."""
    from cleannet.calibration import read_calibration
    from cleannet.checkpoints import load_inference_model
    from cleannet.config import TrainConfig
    from cleannet.decision import ThresholdDecision, verdicts_of
    from cleannet.scoring import ClassEmbeddingScorer
    from cleannet.trainer import train

    settings = TrainConfig(recipe=recipe).recipe_settings()
    embed_norm = settings.embed_norm or "log"
    config = TrainConfig(data_dir=data_dir, checkpoint_dir=os.path.join(run_dir, "checkpoints"),
                         log_dir=os.path.join(run_dir, "log"), img_dim=64, num_ref=FLAGS.num_ref,
                         n_step=FLAGS.n_step, val_interval=500, log_interval=FLAGS.n_step,
                         lr_update=max(1, FLAGS.n_step * 2 // 3), val_batch_size=32, recipe=recipe,
                         embed_norm=embed_norm)
    train(config)
    best = os.path.join(config.checkpoint_dir, "best")
    model, _, path = load_inference_model(best, 64, FLAGS.num_ref, embed_norm)
    reference = np.load(os.path.join(data_dir, "ref.npy"))
    order = np.argsort(data["noisy"], kind="stable")  # all.npy's rows
    scorer = ClassEmbeddingScorer(model, reference, bank=(data["features"][order], data["noisy"][order]))
    i = data["scored"]
    if recipe == "paper":
        similarity = scorer.score(data["features"][i], data["noisy"][i])
        return ThresholdDecision(config.val_sim_thres).verdicts(similarity) == 1
    decision = read_calibration(best, path, settings.class_score, "train.py").decision()
    scores = scorer.score_against_all(data["features"][i], data["noisy"][i], settings.class_score)
    return verdicts_of(decision, scores) == 1


def cleanlab_verdicts(data):
    """cleanlab's verdicts (True = label judged correct) on the scored samples: find_label_issues
    with 5-fold out-of-sample probabilities of a logistic regression on every sample."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    pred_probs = cross_val_predict(classifier, data["features"], data["noisy"], cv=5, method="predict_proba")
    # n_jobs=1: cleanlab's worker processes are forked, and a fork of a process running
    # TensorFlow's threads can hang (it did, in 2 of 35 runs).
    issues = find_label_issues(labels=data["noisy"], pred_probs=pred_probs, n_jobs=1)
    return ~issues[data["scored"]]


def run_one(seed, noise_rate, kind, scaled, work_dir):
    """One run: {method: {group: error}} plus the groups' label noise and sizes, and seconds."""
    data = make_setting(seed, noise_rate, kind, scaled)
    name = "r%g_%s_%s_s%d" % (noise_rate, kind, "scaled" if scaled else "raw", seed)
    data_dir = os.path.join(work_dir, name, "data")
    write_data(data, data_dir, FLAGS.num_ref)
    started = time.time()
    verdicts = {"paper/threshold": cleannet_verdicts(data, data_dir, os.path.join(work_dir, name, "paper"), "paper")}
    middle = time.time()
    verdicts["robust/relative"] = cleannet_verdicts(data, data_dir, os.path.join(work_dir, name, "robust"), "robust")
    seconds = {"paper": middle - started, "robust": time.time() - middle}
    verdicts["cleanlab"] = cleanlab_verdicts(data)
    i = data["scored"]
    truth = data["noisy"][i] == data["labels"][i]
    verified = np.isin(data["noisy"][i], VERIFIED_CLASSES)
    result = {"seconds": seconds, "noise": {}, "samples": {}}
    for group, is_verified in GROUPS:
        mask = verified == is_verified
        result["noise"][group] = float(np.mean(~truth[mask]))
        result["samples"][group] = int(mask.sum())
        for method in METHODS:
            result.setdefault(method, {})[group] = float(np.mean(verdicts[method][mask] != truth[mask]))
    return result


def settings():
    """(noise rate, kind, scaled) of every grid row."""
    rows = [(float(r), k, False) for r in FLAGS.rates for k in FLAGS.kinds]
    if FLAGS.scaled_row and (0.3, "uniform", False) in rows:
        rows.insert(rows.index((0.3, "uniform", False)) + 1, (0.3, "uniform", True))
    if FLAGS.scaled_only:
        rows = [row for row in rows if row[2]]
    return rows


def targets_met(robust, cleanlab, group):
    """The issue's targets for one group of one row: list of failed target names (empty: all met)."""
    failed = []
    factor = 0.75 if group == "without" else 0.5
    if robust.mean() > factor * cleanlab.mean():
        failed.append("mean>%.2gx" % factor)
    if group == "without" and robust.max() > cleanlab.max():
        failed.append("worst")
    if robust.std() > 2 * cleanlab.std():
        failed.append("sd>2x")
    return failed


def print_table(rows, out=sys.stdout):
    """rows: [((rate, kind, scaled), [per-seed results])] → one markdown table."""
    print("| noise | kind | pixels | classes | label noise | " + " | ".join(
        "%s mean ± sd (worst)" % m for m in METHODS) + " | targets (robust/relative) |", file=out)
    print("|---" * (5 + len(METHODS) + 1) + "|", file=out)
    for (rate, kind, scaled), runs in rows:
        for group, _ in GROUPS:
            cells = ["%.1f" % rate, kind, "[0,1]" if scaled else "0-16", group + " verification labels",
                     "%.3f" % np.mean([r["noise"][group] for r in runs])]
            errors = {m: np.array([r[m][group] for r in runs]) for m in METHODS}
            for m in METHODS:
                cells.append("%.3f ± %.3f (%.3f)" % (errors[m].mean(), errors[m].std(), errors[m].max()))
            failed = targets_met(errors["robust/relative"], errors["cleanlab"], group)
            cells.append("met" if not failed else "NOT met: " + ", ".join(failed))
            print("| " + " | ".join(cells) + " |", file=out)


def print_report(rows):
    """The table and the time of robust/relative against paper/threshold (training + scoring)."""
    print()
    print("Detection error (lower is better), %d seeds per row:" % len(rows[0][1]))
    print_table(rows)
    paper = sum(r["seconds"]["paper"] for _, runs in rows for r in runs)
    robust = sum(r["seconds"]["robust"] for _, runs in rows for r in runs)
    print()
    ratios = [r["seconds"]["robust"] / r["seconds"]["paper"] for _, runs in rows for r in runs]
    print("Training + scoring time, robust/relative over paper/threshold, same runs: median %.2fx per run, "
          "%.2fx in all (%.0f s / %.0f s; a process's first training also pays TensorFlow's start-up)"
          % (float(np.median(ratios)), robust / paper, robust, paper))


def main(argv):
    del argv
    try:
        import cleanlab  # noqa: F401  (an optional extra)
    except ImportError:
        print("compare_cleanlab: cleanlab is not installed; install it with: pip install 'cleanlab>=2' "
              "(or pip install .[compare])", file=sys.stderr)
        sys.exit(2)
    if FLAGS.merge:
        rows = []
        for path in FLAGS.merge:
            with open(path) as f:
                rows += [(tuple(setting), runs) for setting, runs in json.load(f)]
        print_report(rows)
        return
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = FLAGS.work_dir or scratch
        rows = []
        for setting in settings():
            runs = []
            for seed in [int(s) for s in FLAGS.seeds]:
                runs.append(run_one(seed, *setting, work_dir))
                print("%s seed %d: %s" % (setting, seed, json.dumps(runs[-1])), flush=True)
            rows.append((setting, runs))
        print_report(rows)
        if FLAGS.results:
            with open(FLAGS.results, "w") as f:
                json.dump([[list(s), runs] for s, runs in rows], f, indent=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
