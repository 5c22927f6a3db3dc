"""Training + scoring time of the recommended pair (train.py --recipe=robust, relative decision
with the neighbours class score) against the paper's (--recipe=paper, threshold decision).

    nice -n 10 python bench/recipe_speed.py [--repeats=3] [--n_step=3000]

On the quickstart's data (scikit-learn's digits, seed 0, 30 % uniform noise, verification
labels for digits 0-4; bench/compare_cleanlab.py's protocol), in one process: the two
trainings alternate (paper, robust, paper, robust, ...) after one warm-up training of each,
every sample is scored, and the median of the per-pair ratios robust / paper is printed.
"""

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

from bench import compare_cleanlab

FLAGS = flags.FLAGS


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    data = compare_cleanlab.make_setting(0, 0.3, "uniform", False)
    with tempfile.TemporaryDirectory() as work_dir:
        data_dir = os.path.join(work_dir, "data")
        compare_cleanlab.write_data(data, data_dir, FLAGS.num_ref)
        seconds = {"paper": [], "robust": []}
        for repeat in range(FLAGS.repeats + 1):  # repeat 0: warm-up, not counted
            for recipe in ("paper", "robust"):
                started = time.time()
                compare_cleanlab.cleannet_verdicts(data, data_dir, os.path.join(work_dir, "%s_%d" % (recipe, repeat)),
                                                   recipe)
                if repeat:
                    seconds[recipe].append(time.time() - started)
    ratios = np.array(seconds["robust"]) / np.array(seconds["paper"])
    print("paper/threshold: %s s" % ", ".join("%.1f" % s for s in seconds["paper"]))
    print("robust/relative: %s s" % ", ".join("%.1f" % s for s in seconds["robust"]))
    print("training + scoring, robust/relative over paper/threshold: median %.2fx (%d pairs, %d steps)"
          % (float(np.median(ratios)), len(ratios), FLAGS.n_step))


if __name__ == "__main__":
    compare_cleanlab.define_flags()
    flags.DEFINE_integer("repeats", 3, "Timed pairs (after one warm-up pair).")
    app.run(main)
