"""Extracts image features (e.g. ResNet-50 pool5) into CleanNet's TSV or .npy files.

A thin entry point kept at its documented path; the tool is `cleannet.tools.extract_features`
(installed: `cleannet-extract-features`). `python util/extract_features.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cleannet.tools.extract_features import run  # noqa: E402

if __name__ == "__main__":
    run()
