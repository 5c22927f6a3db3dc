"""Drops the verification labels of held-out classes from a verified TSV.

A thin entry point kept at its documented path; the tool is `cleannet.tools.heldout_train_data`
(installed: `cleannet-heldout-train-data`). `python util/heldout_train_data.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cleannet.tools.heldout_train_data import run  # noqa: E402

if __name__ == "__main__":
    run()
