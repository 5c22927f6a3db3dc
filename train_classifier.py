"""Trains a classifier on features or on images with CleanNet's per-sample weights.

    python train_classifier.py --train_tsv=all.tsv --test_tsv=test.tsv --class_list=classes.txt \\
        --weights_file=W.tsv --weighting=soft --train_dir=classifier/

The entry point of a checkout; installed, the same tool is `cleannet-train-classifier`.
Flags, inputs and outputs: cleannet/classifier.py and docs/classifier.md.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cleannet.classifier import run  # noqa: E402

if __name__ == "__main__":
    run()
