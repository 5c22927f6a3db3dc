"""Trains a classifier on features or images with CleanNet's per-sample weights.

A thin entry point kept at its documented path; the tool is `cleannet.tools.train_classifier`
(installed: `cleannet-train-classifier`). `python train_classifier.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cleannet.tools.train_classifier import run  # noqa: E402

if __name__ == "__main__":
    run()
