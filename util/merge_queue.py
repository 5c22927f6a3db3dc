"""Merges a filled verification queue into the verified training data.

A thin entry point kept at its documented path; the tool is `cleannet.tools.merge_queue`
(installed: `cleannet-merge-queue`). `python util/merge_queue.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cleannet.tools.merge_queue import run  # noqa: E402

if __name__ == "__main__":
    run()
