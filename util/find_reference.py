"""Finds each class's reference feature vectors (k-means centres): ref.npy.

A thin entry point kept at its documented path; the tool is `cleannet.tools.find_reference`
(installed: `cleannet-find-reference`). `python util/find_reference.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cleannet.tools.find_reference import run  # noqa: E402

if __name__ == "__main__":
    run()
