"""Writes the review page of CleanNet's verdicts and the verification queue.

A thin entry point kept at its documented path; the tool is `cleannet.tools.report`
(installed: `cleannet-report`). `python util/report.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cleannet.tools.report import run  # noqa: E402

if __name__ == "__main__":
    run()
