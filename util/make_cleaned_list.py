"""Writes the cleaned image list from inference.py's predictions.

A thin entry point kept at its documented path; the tool is `cleannet.tools.make_cleaned_list`
(installed: `cleannet-make-cleaned-list`). `python util/make_cleaned_list.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cleannet.tools.make_cleaned_list import run  # noqa: E402

if __name__ == "__main__":
    run()
