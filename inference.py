"""Scores samples with a trained CleanNet, with the original inference.py's flags.

A thin entry point kept at its documented path; the tool is `cleannet.tools.inference`
(installed: `cleannet-inference`). `python inference.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cleannet.tools.inference import run  # noqa: E402

if __name__ == "__main__":
    run()
