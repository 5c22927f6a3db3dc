"""Does verifying the queued samples help more than verifying random ones? Measured on digits.

    nice -n 10 python bench/bench_queue.py --seeds=0,1,2,3,4 [--n_step=3000] [--queue=100]

The quickstart's protocol, once per seed (cleannet.quickstart's data preparation: scikit-learn's
digits, 30 % of the labels flipped to another class, verification labels for digits 0-4 only),
with the recommended pair: train.py --recipe=robust and the relative decision with the class
score train.py calibrates for best/ (neighbours, over all.npy):
1. round 0: CleanNet trained on that data (train.py's trainer, in this process); its
   best/calibration.json (calibrated on val.npy, which is the same for every arm);
2. util/report.py's queue (cleannet.review.build.build_report, --queue=N, --verified_list=
   train.tsv, --calibration) over the training samples' predictions: N samples to verify,
   all of the classes without verification labels here, since those of digits 0-4 are all
   verified already;
3. three arms, each adding N verification labels (the truth: label == true class) to
   train.tsv with util/merge_queue.py's merge, then convert_data (train.npy only; val.npy,
   all.npy and ref.npy copied from round 0), training from scratch with the same seed and
   steps, and train.py's calibration of the new best/:
   - random: N samples drawn at random among the training samples not verified yet;
   - queued: util/report.py's queue (least certain first);
   - side quotas: select_queue given the verdicts (each class's picks keep to its share of
     "label wrong" verdicts; cleannet.review.queue), a variant measured against it;
4. the label-noise detection error (relative decision) on the test samples of the classes
   without verification labels (digits 5-9) and with them (0-4), for round 0 and the arms.
Prints a per-seed table and mean ± sd over the seeds.
"""

import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags, logging

from cleannet.config import RECIPES

FLAGS = flags.FLAGS
IMG_DIM = 64
ARMS = ("round 0", "random", "queued", "side quotas")
RECIPE = "robust"  # the recommended pair (README's quickstart): --recipe=robust ...
CLASS_SCORE = "neighbours"  # ... and the relative decision with the class score train.py calibrates


def define_flags():
    flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds of the split, the label noise and the training.")
    flags.DEFINE_float("noise_rate", 0.3, "Share of labels replaced by a wrong class.")
    flags.DEFINE_integer("n_step", 1500, "CleanNet training steps per model.")
    flags.DEFINE_integer("num_ref", 8, "Reference vectors per class.")
    flags.DEFINE_integer("queue", 100, "Samples verified per arm (N).")
    flags.DEFINE_string("work_dir", None, "Where the runs go (default: a temporary directory, removed).")


def prepare(work, seed):
    """The quickstart's files and arrays under `work`; returns noisy_digits' tuple."""
    from cleannet import quickstart
    from cleannet.tools.convert_data import convert
    from cleannet.tools.find_reference import find_references
    from cleannet import datafiles
    from cleannet.tools.heldout_train_data import filter_heldout
    from noisylabels.fileio import save_npy

    quickstart.write_tsvs(work, seed, FLAGS.noise_rate)
    tsv, data = os.path.join(work, "tsv"), os.path.join(work, "data")
    filter_heldout(os.path.join(tsv, "heldout_classes.tsv"), os.path.join(tsv, "train_all_classes.tsv"),
                   os.path.join(tsv, "train.tsv"))
    for split in ("train", "val", "all"):
        convert(split, os.path.join(tsv, "classes.txt"), os.path.join(tsv, split + ".tsv"), data)
    features, class_ids = datafiles.load_all(os.path.join(data, "all.npy"), IMG_DIM)
    save_npy(os.path.join(data, "ref.npy"), find_references(features, class_ids, 10, FLAGS.num_ref))
    return quickstart.noisy_digits(seed, FLAGS.noise_rate)


def train_and_calibrate(data_dir, model_dir, seed):
    """Trains CleanNet (the recommended pair: --recipe=robust) on data_dir; returns (NumPy model,
    reference table, the Calibration train.py stored for best/, the neighbours bank)."""
    from cleannet import datafiles
    from cleannet.calibration import read_calibration
    from cleannet.checkpoints import load_inference_model
    from cleannet.config import TrainConfig
    from cleannet.trainer import train

    config = TrainConfig(data_dir=data_dir, checkpoint_dir=os.path.join(model_dir, "checkpoints"),
                         log_dir=os.path.join(model_dir, "log"), img_dim=IMG_DIM, num_ref=FLAGS.num_ref,
                         n_step=FLAGS.n_step, val_interval=500, log_interval=250,
                         lr_update=max(1, FLAGS.n_step * 2 // 3), val_batch_size=32, seed=seed,
                         recipe=RECIPE, embed_norm=RECIPES[RECIPE].embed_norm)
    train(config)
    best = os.path.join(model_dir, "checkpoints", "best")
    model, _, path = load_inference_model(best, IMG_DIM, FLAGS.num_ref, config.embed_norm)
    calibration = read_calibration(best, path, CLASS_SCORE, "train.py (it calibrates best/)")
    reference = datafiles.load_ref(os.path.join(data_dir, "ref.npy"), IMG_DIM, FLAGS.num_ref)
    bank = datafiles.load_all(os.path.join(data_dir, "all.npy"), IMG_DIM)
    return model, reference, calibration, (np.asarray(bank[0], np.float32), np.asarray(bank[1], np.int32))


def scores_of(trained, features, class_ids):
    """Cross-class scores with the calibration's class score (inference.py --decision=relative)."""
    from cleannet.scoring import ClassEmbeddingScorer

    model, reference, calibration, bank = trained
    scorer = ClassEmbeddingScorer(model, reference, bank=bank)
    return scorer.score_against_all(features, class_ids, calibration.class_score, 4096)


def detection_errors(trained, digits):
    """(error on digits 5-9, error on digits 0-4) of the relative decision on the test samples."""
    calibration = trained[2]
    features, labels, noisy, (_, _, test) = digits
    scores = scores_of(trained, features[test], noisy[test])
    verdict = calibration.decision().verdicts(scores.similarity, scores.margin).astype(bool)
    wrong = verdict != (noisy[test] == labels[test])
    unverified = noisy[test] >= 5
    return float(wrong[unverified].mean()), float(wrong[~unverified].mean())


def write_train_predictions(work, trained, digits):
    """The training samples' verdicts as inference.py --output_format=tsv --decision=relative writes them."""
    from cleannet.outputs import ResultWriter
    from cleannet.quickstart import class_name

    calibration = trained[2]
    features, _, noisy, (train, _, _) = digits
    scores = scores_of(trained, features[train], noisy[train])
    path = os.path.join(work, "train_predictions.tsv")
    names = [class_name(d) for d in range(10)]
    with open(path, "w") as f:
        ResultWriter(f, "tsv", calibration.decision(), class_list=names).write(
            scores, keys=["img%04d" % i for i in train], class_names=[names[c] for c in noisy[train]])
    return path


def queued_keys(work, predictions):
    """The keys of util/report.py's queue for the round-0 model."""
    from cleannet.review.build import ReportConfig, build_report
    from cleannet.review.queue import read_queue

    result = build_report(ReportConfig(
        predictions=predictions, class_list=os.path.join(work, "tsv", "classes.txt"),
        output_dir=os.path.join(work, "report"), verified_list=os.path.join(work, "tsv", "train.tsv"),
        calibration=os.path.join(work, "round0", "checkpoints", "best", "calibration.json"), queue=FLAGS.queue))
    return [row.key for row in read_queue(result.queue_path)]


def side_quota_keys(work, predictions):
    """A variant of the queue: select_queue given the verdicts, so that each class's picks keep
    to its share of verdicts "label wrong" (cleannet.review.queue), otherwise as util/report.py's."""
    from cleannet.quickstart import class_name
    from cleannet.review import decision_used, summary
    from cleannet.review.predictions import read_predictions
    from cleannet.review.queue import select_queue

    names = [class_name(d) for d in range(10)]
    rows = read_predictions(predictions, names)
    used = decision_used.find_decision(rows, 0.1, os.path.join(work, "round0", "checkpoints", "best",
                                                                 "calibration.json"))
    verified_classes, verified_keys = summary.read_verified(os.path.join(work, "tsv", "train.tsv"), names)
    exclude = np.array([key in verified_keys for key in rows.keys], bool)
    chosen = select_queue(rows.label, decision_used.certainty(rows, used.decision), FLAGS.queue,
                          verified_classes, exclude, verdict=rows.verdict)
    return [rows.keys[i] for i in chosen]


def random_keys(work, digits, seed):
    """N keys drawn at random among the training samples without a verification label."""
    _, _, noisy, (train, _, _) = digits
    unverified = train[noisy[train] >= 5]
    chosen = np.random.default_rng(1000 + seed).choice(unverified, FLAGS.queue, replace=False)
    return ["img%04d" % i for i in chosen]


def run_arm(work, name, keys, digits, seed):
    """Verifies `keys` (truth as vlabel), merges them into train.tsv, retrains; returns the errors."""
    from cleannet.quickstart import class_name
    from cleannet.review.merge import merge_queue
    from cleannet.review.queue import format_queue
    from cleannet.tools.convert_data import convert

    _, labels, noisy, _ = digits
    index = [int(key[3:]) for key in keys]
    tsv, data = os.path.join(work, "tsv"), os.path.join(work, "data_" + name)
    filled = os.path.join(work, "queue_%s_filled.tsv" % name)
    with open(filled, "w") as f:
        f.write(format_queue(keys, [""] * len(keys), [class_name(noisy[i]) for i in index],
                             [str(int(noisy[i] == labels[i])) for i in index]))
    merged = os.path.join(tsv, "train_%s.tsv" % name)
    merge_queue(filled, os.path.join(tsv, "all.tsv"), merged, verified_tsv=os.path.join(tsv, "train.tsv"))
    convert("train", os.path.join(tsv, "classes.txt"), merged, data)
    for split in ("val", "all", "ref"):
        shutil.copy(os.path.join(work, "data", split + ".npy"), data)
    return detection_errors(train_and_calibrate(data, os.path.join(work, name), seed), digits)


def run_seed(work, seed):
    digits = prepare(work, seed)
    trained = train_and_calibrate(os.path.join(work, "data"), os.path.join(work, "round0"), seed)
    errors = {"round 0": detection_errors(trained, digits)}
    predictions = write_train_predictions(work, trained, digits)
    keys = {"random": random_keys(work, digits, seed), "queued": queued_keys(work, predictions),
            "side quotas": side_quota_keys(work, predictions)}
    _, labels, noisy, _ = digits
    wrong = {arm: sum(noisy[int(k[3:])] != labels[int(k[3:])] for k in chosen) for arm, chosen in keys.items()}
    for arm in ARMS[1:]:
        errors[arm] = run_arm(work, arm.replace(" ", "_"), keys[arm], digits, seed)
    print("seed %d: wrongly labelled among the %d verified: %s; errors (5-9, 0-4): %s" % (
        seed, FLAGS.queue, ", ".join("%s %d" % (a, wrong[a]) for a in ARMS[1:]),
        ", ".join("%s %.3f/%.3f" % (a, *errors[a]) for a in ARMS)), flush=True)
    return errors


def print_tables(per_seed):
    for part, title in ((0, "without verification labels (5-9)"), (1, "with verification labels (0-4)")):
        print()
        print("Detection error (relative decision) on the test samples of the classes %s:" % title)
        print("| seed | round 0 | + %d random | + %d queued | + %d queued, side quotas |"
              % ((FLAGS.queue,) * 3))
        print("|---|---|---|---|---|")
        for seed, errors in per_seed.items():
            print("| %d | %s |" % (seed, " | ".join("%.3f" % errors[a][part] for a in ARMS)))
        stats = [np.array([errors[a][part] for errors in per_seed.values()]) for a in ARMS]
        print("| **mean ± sd** | %s |" % " | ".join("%.3f ± %.3f" % (v.mean(), v.std(ddof=1) if len(v) > 1 else 0)
                                                   for v in stats))
    print()
    for arm in ARMS[2:]:
        gain = np.array([e["random"][0] - e[arm][0] for e in per_seed.values()])
        print("random minus %s, classes 5-9: mean %.3f, sd %.3f, %s better in %d of %d seeds, worse in %d"
              % (arm, gain.mean(), gain.std(ddof=1) if len(gain) > 1 else 0, arm, int(np.sum(gain > 0)),
                 len(gain), int(np.sum(gain < 0))))


def main(argv):
    del argv
    import tempfile

    from noisylabels.console import load_tensorflow

    load_tensorflow()
    logging.set_verbosity(logging.WARNING)
    root = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_queue.")
    try:
        per_seed = {}
        for seed in [int(s) for s in FLAGS.seeds]:
            work = os.path.join(root, "seed_%d" % seed)
            if os.path.exists(work):
                shutil.rmtree(work)
            per_seed[seed] = run_seed(work, seed)
        print_tables(per_seed)
    finally:
        if not FLAGS.work_dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
