"""Benchmark: `cleannet.find_label_issues` on scikit-learn's digits, one call per method.

    python bench/bench_api_digits.py [--noise_rate=0.3] [--checked=300] [--seed=0]
        [--methods=robust/relative,paper/threshold,paper/relative]

The data of docs/api.md: the 1797 digits, a share of the labels replaced by another digit,
`--checked` labels of the digits 0-4 verified. For each method (recipe/decision; the
first is the API's default, the recommended pair) it runs the whole call in a fresh child
process (interpreter start-up, imports, k-means, training, scoring) and prints its wall
and CPU seconds, the wall time's ratio to the last method's run (the paper's method by
default), the settings chosen, and the detection error overall, on the classes with
verification labels (samples labelled 0-4) and on those without (5-9), next to that of
trusting every label (the noise rate).
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags

from bench import common
from noisylabels.flagutil import run_tool

CHILD_CODE = r'''
import sys
import numpy as np
from absl import logging
from sklearn.datasets import load_digits
import cleannet

noise_rate, checked_count, seed, recipe, decision = sys.argv[1:6]
noise_rate, checked_count, seed = float(noise_rate), int(checked_count), int(seed)
logging.set_verbosity(logging.INFO)
digits = load_digits()
rng = np.random.default_rng(seed)
true = digits.target
labels = np.where(rng.random(len(true)) < noise_rate, (true + rng.integers(1, 10, len(true))) % 10, true)
verified = np.full(len(labels), -1)
checked = rng.choice(np.flatnonzero(labels < 5), checked_count, replace=False)
verified[checked] = labels[checked] == true[checked]
issues = cleannet.find_label_issues(digits.data, labels, verified=verified, seed=seed, recipe=recipe,
                                    decision=decision)
correct = labels == true
wrong = (issues.verdict.to_numpy() == 1) != correct
print("detection error %.4f" % np.mean(wrong))
print("with verification labels %.4f" % np.mean(wrong[labels < 5]))
print("without verification labels %.4f" % np.mean(wrong[labels >= 5]))
print("trusting every label %.4f" % np.mean(~correct))
'''
FIGURES = ("detection error", "with verification labels", "without verification labels", "trusting every label")


def define_flags():
    flags.DEFINE_float("noise_rate", 0.3, "Share of labels replaced by another digit.")
    flags.DEFINE_integer("checked", 300, "Verified labels among the digits 0-4.")
    flags.DEFINE_integer("seed", 0, "Seed of the noise, the checked labels and the call.")
    flags.DEFINE_list("methods", ["robust/relative", "paper/threshold", "paper/relative"],
                      "recipe/decision pairs to run; wall-time ratios are against the last.")


def run_method(method):
    """One find_label_issues call in a child process: (child run dict, figures dict)."""
    recipe, decision = method.split("/")
    f = flags.FLAGS
    run = common.run_python_child("-c", [CHILD_CODE, str(f.noise_rate), str(f.checked), str(f.seed), recipe,
                                         decision])
    if run["returncode"] != 0:
        raise RuntimeError("find_label_issues (%s) failed:\n%s" % (method, run["output"][-3000:]))
    figures = {}
    for line in run["output"].splitlines():
        for name in FIGURES:
            if line.startswith(name + " "):
                figures[name] = float(line.split()[-1])
        if "CleanNet settings chosen" in line:
            print("%s: %s" % (method, line.split("] ", 1)[-1]))
    return run, figures


def main(argv):
    del argv
    results = [(method, *run_method(method)) for method in flags.FLAGS.methods]
    baseline = results[-1][1]["seconds"]
    for method, run, figures in results:
        common.print_table(
            "cleannet.find_label_issues(recipe=%r, decision=%r) on digits (1797 samples, 64-d), one call, start-up "
            "included" % tuple(method.split("/")),
            [("wall seconds", run["seconds"], "s"), ("CPU seconds", run["cpu_seconds"], "s"),
             ("wall time / %s's" % results[-1][0], run["seconds"] / baseline, "x")]
            + [(name if name != FIGURES[-1] else "baseline: " + name, figures[name], "") for name in FIGURES])


if __name__ == "__main__":
    define_flags()
    run_tool(main)
