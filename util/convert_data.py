"""Converts CleanNet TSV files (train, val, all, ref) to .npy.

A thin entry point kept at its documented path; the tool is `cleannet.tools.convert_data`
(installed: `cleannet-convert-data`). `python util/convert_data.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cleannet.tools.convert_data import run  # noqa: E402

if __name__ == "__main__":
    run()
