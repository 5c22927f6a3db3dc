"""Label-noise detection error of CleanNet (threshold and relative decisions) next to cleanlab.

    pip install 'cleanlab>=2'          # or: pip install .[compare]
    python bench/compare_cleanlab.py --seeds=0,1,2,3 [--noise_rate=0.3] [--work_dir=./compare_cleanlab]

The quickstart's protocol, once per seed: scikit-learn's digits, --noise_rate of the labels
flipped to another class, verification labels for digits 0-4 only. CleanNet runs through
the public tools exactly as `python -m cleannet.quickstart --seed=S` does (in
WORK_DIR/seed_S; a re-run with the same settings reuses the trained models). cleanlab
cannot use verification labels; it gets every noisily labelled sample that CleanNet sees
(the training and the test samples), with out-of-sample predicted probabilities from
5-fold cross-validation of a logistic regression on the standardised pixels, as its
documentation recommends, and `cleanlab.filter.find_label_issues`. All three are scored
on the test samples: the share whose verdict (label correct or not) is wrong, for the
classes with verification labels and for those without.

Exits 2 with a message when cleanlab is not installed.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """The script's flags (defined when it runs, so that tests can import it)."""
    flags.DEFINE_list("seeds", ["0", "1", "2", "3"], "Seeds of the split and the label noise (one run each).")
    flags.DEFINE_float("noise_rate", 0.3, "Share of labels replaced by a wrong class.")
    flags.DEFINE_integer("n_step", 3000, "CleanNet training steps.")
    flags.DEFINE_integer("num_ref", 8, "CleanNet reference vectors per class.")
    flags.DEFINE_string("work_dir", "./compare_cleanlab", "Where each seed's quickstart run goes (WORK_DIR/seed_S).")

GROUPS = (("with verification labels (0-4)", True), ("without verification labels (5-9)", False))
METHODS = ("threshold", "relative", "cleanlab")


def cleanlab_verdicts(seed, noise_rate):
    """cleanlab's verdicts (True = label judged correct) on the quickstart's test samples, in their order."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cleannet.quickstart import noisy_digits

    features, _, noisy, (train, _, test) = noisy_digits(seed, noise_rate)
    seen = np.concatenate([train, test])  # the samples with noisy labels that CleanNet is given
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    pred_probs = cross_val_predict(classifier, features[seen], noisy[seen], cv=5, method="predict_proba")
    issues = find_label_issues(labels=noisy[seen], pred_probs=pred_probs)
    return ~issues[len(train):]


def run_seed(seed):
    """CleanNet (through the quickstart pipeline) and cleanlab on one seed. Returns (result dict, errors)."""
    from cleannet import quickstart

    settings = dict(noise_rate=FLAGS.noise_rate, n_step=FLAGS.n_step, num_ref=FLAGS.num_ref, seed=seed)
    work_dir = os.path.abspath(os.path.join(FLAGS.work_dir, "seed_%d" % seed))
    quickstart.prepare_work_dir(work_dir, settings)
    log = os.path.join(work_dir, quickstart.LOG_FILE)
    open(log, "w").close()
    result = quickstart.run_detection(work_dir, settings, log)
    result["cleanlab"] = cleanlab_verdicts(seed, FLAGS.noise_rate)
    errors = {}
    for name, verified in GROUPS:
        mask = result["verified"] == verified
        errors[name] = {method: quickstart.detection_error(result[method][mask], result["label_correct"][mask])
                        for method in METHODS}
        errors[name]["samples"] = int(mask.sum())
        errors[name]["noise"] = float(np.mean(~result["label_correct"][mask]))
    return result, errors


def print_tables(per_seed):
    print()
    print("Label-noise detection error on the test samples (noise rate %g; lower is better):" % FLAGS.noise_rate)
    print("| seed | classes | samples | label noise | CleanNet threshold | CleanNet relative | cleanlab |")
    print("|---|---|---|---|---|---|---|")
    for seed, errors in per_seed:
        for name, _ in GROUPS:
            e = errors[name]
            print("| %d | %s | %d | %.3f | %.3f | %.3f | %.3f |"
                  % (seed, name, e["samples"], e["noise"], e["threshold"], e["relative"], e["cleanlab"]))
    print()
    print("Mean ± standard deviation over %d seeds:" % len(per_seed))
    print("| classes | label noise | CleanNet threshold | CleanNet relative | cleanlab |")
    print("|---|---|---|---|---|")
    for name, _ in GROUPS:
        cells = []
        for key in ("noise",) + METHODS:
            values = np.array([errors[name][key] for _, errors in per_seed])
            cells.append("%.3f ± %.3f" % (values.mean(), values.std()))
        print("| %s | %s |" % (name, " | ".join(cells)))


def main(argv):
    del argv
    try:
        import cleanlab  # noqa: F401  (an optional extra)
    except ImportError:
        print("compare_cleanlab: cleanlab is not installed; install it with: pip install 'cleanlab>=2' "
              "(or pip install .[compare])", file=sys.stderr)
        sys.exit(2)
    per_seed = []
    for seed in [int(s) for s in FLAGS.seeds]:
        print("== seed %d" % seed, flush=True)
        result, errors = run_seed(seed)
        suggested = result["suggested"] != ""
        right = int(np.sum(result["suggested"][suggested] == result["true_class"][suggested]))
        print("relative decision: %d suggested classes, %d of them the true class" % (int(suggested.sum()), right))
        per_seed.append((seed, errors))
    print_tables(per_seed)


if __name__ == "__main__":
    define_flags()
    app.run(main)
