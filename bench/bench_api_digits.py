"""Benchmark: `cleannet.find_label_issues` on scikit-learn's digits, one call, defaults.

    python bench/bench_api_digits.py [--noise_rate=0.3] [--checked=300] [--seed=0]

The data of docs/api.md: the 1797 digits, a share of the labels replaced by another digit,
`--checked` labels of the digits 0-4 verified. Prints the wall and CPU seconds of the
whole call in a fresh child process (interpreter start-up, imports, k-means, training,
scoring), the settings it chose, and the detection error next to that of trusting every
label (the baseline: the noise rate).
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

noise_rate, checked_count, seed = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
logging.set_verbosity(logging.INFO)
digits = load_digits()
rng = np.random.default_rng(seed)
true = digits.target
labels = np.where(rng.random(len(true)) < noise_rate, (true + rng.integers(1, 10, len(true))) % 10, true)
verified = np.full(len(labels), -1)
checked = rng.choice(np.flatnonzero(labels < 5), checked_count, replace=False)
verified[checked] = labels[checked] == true[checked]
issues = cleannet.find_label_issues(digits.data, labels, verified=verified, seed=seed)
correct = labels == true
print("detection error %.4f" % np.mean((issues.verdict == 1) != correct))
print("trusting every label %.4f" % np.mean(~correct))
'''


def define_flags():
    flags.DEFINE_float("noise_rate", 0.3, "Share of labels replaced by another digit.")
    flags.DEFINE_integer("checked", 300, "Verified labels among the digits 0-4.")
    flags.DEFINE_integer("seed", 0, "Seed of the noise, the checked labels and the call.")


def main(argv):
    del argv
    f = flags.FLAGS
    run = common.run_python_child("-c", [CHILD_CODE, str(f.noise_rate), str(f.checked), str(f.seed)])
    if run["returncode"] != 0:
        raise RuntimeError("find_label_issues failed:\n" + run["output"][-3000:])
    figures = {}
    for line in run["output"].splitlines():
        for name in ("detection error", "trusting every label"):
            if line.startswith(name + " "):
                figures[name] = float(line.split()[-1])
        if "CleanNet settings chosen" in line:
            print(line.split("] ", 1)[-1])
    common.print_table("cleannet.find_label_issues on digits (1797 samples, 64-d), one call, start-up included",
                       [("wall seconds", run["seconds"], "s"), ("CPU seconds", run["cpu_seconds"], "s"),
                        ("detection error", figures["detection error"], ""),
                        ("baseline: trusting every label", figures["trusting every label"], "")])


if __name__ == "__main__":
    define_flags()
    run_tool(main)
