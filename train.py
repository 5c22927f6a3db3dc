"""Trains CleanNet with the original train.py's flags and defaults.

A thin entry point kept at its documented path; the tool is `cleannet.tools.train`
(installed: `cleannet-train`). `python train.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cleannet.tools.train import run  # noqa: E402

if __name__ == "__main__":
    run()
