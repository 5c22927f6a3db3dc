"""CleanNet end to end on data that ships with scikit-learn: the handwritten digits.

    python -m cleannet.quickstart [--work_dir=./quickstart] [--noise_rate=0.3]

What it does, through the same public tools a user runs:
1. Takes scikit-learn's 1797 digits (8×8 images, 64 pixel values each, used as the
   feature vector), corrupts a known share of the training labels (--noise_rate) to a
   different class, and writes the files of SPEC.md 1.1: classes.txt, a verified TSV
   (key, class_name, vlabel, feature) for train and val, an all-samples TSV, and a test
   TSV in the all-samples layout whose truth (label correct or not) is known.
2. Keeps verification labels for only half the classes (digits 0-4) with
   util/heldout_train_data.py, as in the paper's transfer-learning experiments.
3. util/convert_data.py → train.npy, val.npy, all.npy; util/find_reference.py → ref.npy.
4. train.py (TensorBoard logs under WORK_DIR/train/log), then inference.py on the test TSV.
5. Prints the label-noise detection error on the test samples of the classes with
   verification labels and of those without, next to the error of trusting every label.
6. Scores the training samples with `inference.py --output_weights` and trains a softmax
   classifier (train_classifier.py) on them without weights, with the paper's soft weights
   max(0, cos) and with hard weights 1[cos >= 0.1], printing the test accuracies (on the
   true labels) side by side.
"""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # train_classifier.py is a top-level script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines

import numpy as np
from absl import app, flags, logging

flags.DEFINE_string("work_dir", "./quickstart", "Where the data, model, logs and predictions go.")
flags.DEFINE_float("noise_rate", 0.3, "Share of labels replaced by a wrong class.")
flags.DEFINE_integer("n_step", 3000, "Training steps.")
flags.DEFINE_integer("num_ref", 8, "Reference vectors per class (k-means centres).")
flags.DEFINE_integer("seed", 0, "Seed for the split and the label noise.")
FLAGS = flags.FLAGS

VERIFIED_CLASSES = range(5)  # digits 0-4 keep verification labels; 5-9 have none


def class_name(digit):
    return "digit_%d" % digit


def make_split(num_samples, seed):
    """Indices of the train / val / test parts of the digits, shuffled: 60% / 15% / 25%."""
    order = np.random.default_rng(seed).permutation(num_samples)
    n_train, n_val = int(0.6 * num_samples), int(0.15 * num_samples)
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]


def corrupt_labels(labels, noise_rate, num_classes, rng):
    """Replaces a `noise_rate` share of labels by a different class, uniformly."""
    noisy = labels.copy()
    flip = rng.random(len(labels)) < noise_rate
    shift = rng.integers(1, num_classes, size=len(labels))
    noisy[flip] = (labels[flip] + shift[flip]) % num_classes
    return noisy


def feature_text(row):
    return ",".join("%g" % v for v in row)


def write_tsvs(work_dir, seed, noise_rate):
    """Writes the quickstart's input files; returns the test set's truth (label correct?, class)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    features, labels = digits.data.astype(np.float32), digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    noisy = corrupt_labels(labels, noise_rate, 10, rng)
    train, val, test = make_split(len(labels), seed)
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
    return (noisy[test] == labels[test]), noisy[test]


def run_tool(args, log):
    """Runs a project tool as a user would, its output appended to `log`."""
    command = [sys.executable] + args
    print("$ " + " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in command[1:]), flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(log, "a") as out:
        result = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        with open(log) as f:
            tail = f.read().splitlines()[-15:]
        sys.exit("quickstart: step failed (exit %d); last lines of %s:\n%s" % (result.returncode, log, "\n".join(tail)))


def detection_error(similarities, label_correct, threshold):
    """Share of samples whose verdict (cos ≥ threshold) disagrees with the truth."""
    return float(np.mean((similarities >= threshold) != label_correct))


def main(argv):
    del argv
    started = time.time()
    work_dir = os.path.abspath(FLAGS.work_dir)
    tsv_dir, data_dir = os.path.join(work_dir, "tsv"), os.path.join(work_dir, "data")
    model_dir = os.path.join(work_dir, "train")
    log = os.path.join(work_dir, "quickstart.log")
    os.makedirs(work_dir, exist_ok=True)
    open(log, "w").close()
    truth, test_classes = write_tsvs(work_dir, FLAGS.seed, FLAGS.noise_rate)
    classes = os.path.join(tsv_dir, "classes.txt")
    tool = lambda name: os.path.join(ROOT, name)
    run_tool([tool("util/heldout_train_data.py"), "--heldout_class_list=" + os.path.join(tsv_dir, "heldout_classes.tsv"),
              "--input_file=" + os.path.join(tsv_dir, "train_all_classes.tsv"),
              "--output_file=" + os.path.join(tsv_dir, "train.tsv")], log)
    for split in ("train", "val", "all"):
        run_tool([tool("util/convert_data.py"), "--split=" + split, "--class_list=" + classes,
                  "--data_path=" + os.path.join(tsv_dir, split + ".tsv"), "--output_dir=" + data_dir], log)
    run_tool([tool("util/find_reference.py"), "--class_list=" + classes, "--input_npy=" + os.path.join(data_dir, "all.npy"),
              "--output_dir=" + data_dir, "--num_ref=%d" % FLAGS.num_ref, "--img_dim=64"], log)
    run_tool([tool("train.py"), "--data_dir=" + data_dir, "--checkpoint_dir=" + os.path.join(model_dir, "checkpoints"),
              "--log_dir=" + os.path.join(model_dir, "log"), "--img_dim=64", "--num_ref=%d" % FLAGS.num_ref,
              "--n_step=%d" % FLAGS.n_step, "--val_interval=500", "--log_interval=500",
              "--lr_update=%d" % max(1, FLAGS.n_step * 2 // 3), "--val_batch_size=32"], log)
    predictions = os.path.join(work_dir, "test_predictions.txt")
    run_tool([tool("inference.py"), "--data_dir=" + data_dir, "--class_list=" + classes,
              "--image_feature_list=" + os.path.join(tsv_dir, "test.tsv"),
              "--checkpoint_dir=" + os.path.join(model_dir, "checkpoints", "best"), "--output_file=" + predictions,
              "--img_dim=64", "--num_ref=%d" % FLAGS.num_ref, "--mode=inference"], log)
    similarities = np.loadtxt(predictions, dtype=np.float64, ndmin=1)
    verified = np.isin(test_classes, list(VERIFIED_CLASSES))
    print()
    print("Label-noise detection error on the test samples (threshold 0.1):")
    print("| classes | samples | label noise (error of trusting every label) | CleanNet detection error |")
    print("|---|---|---|---|")
    for name, mask in (("with verification labels (0-4)", verified), ("without verification labels (5-9)", ~verified)):
        print("| %s | %d | %.3f | %.3f |" % (name, int(mask.sum()), float(np.mean(~truth[mask])),
                                             detection_error(similarities[mask], truth[mask], 0.1)))
    weights = os.path.join(work_dir, "train_weights.tsv")
    run_tool([tool("inference.py"), "--data_dir=" + data_dir, "--class_list=" + classes,
              "--image_feature_list=" + os.path.join(tsv_dir, "all.tsv"),
              "--checkpoint_dir=" + os.path.join(model_dir, "checkpoints", "best"),
              "--output_file=" + os.path.join(work_dir, "train_predictions.txt"), "--output_weights=" + weights,
              "--img_dim=64", "--num_ref=%d" % FLAGS.num_ref, "--mode=inference"], log)
    from cleannet.classifier import train_classifier

    logging.set_verbosity(logging.WARNING)  # the classifier's per-epoch progress lines
    print()
    print("A softmax classifier trained on the noisy training labels, test accuracy on the true labels:")
    print("| sample weights | test accuracy |")
    print("|---|---|")
    for weighting, label in (("none", "none (every sample 1)"), ("soft", "soft, max(0, cos)"),
                             ("hard", "hard, 1[cos >= 0.1]")):
        accuracy = train_classifier(os.path.join(tsv_dir, "all.tsv"), classes,
                                    test_tsv=os.path.join(tsv_dir, "test_true.tsv"), weights_file=weights,
                                    weighting=weighting, epochs=30, learning_rate=0.01, seed=FLAGS.seed)
        print("| %s | %.3f |" % (label, accuracy))
    print()
    print("Done in %.0f s. TensorBoard: tensorboard --logdir %s" % (time.time() - started, os.path.join(model_dir, "log")))


if __name__ == "__main__":
    app.run(main)
