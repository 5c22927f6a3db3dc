"""Imports a checkpoint of the original TF1 CleanNet.

A thin entry point kept at its documented path; the tool is `cleannet.tools.import_tf1_checkpoint`
(installed: `cleannet-import-tf1-checkpoint`). `python util/import_tf1_checkpoint.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cleannet.tools.import_tf1_checkpoint import run  # noqa: E402

if __name__ == "__main__":
    run()
