"""Prepares scikit-learn's digits with the CIFAR-10 protocol's synthetic label noise.

A thin entry point kept at its documented path (`python -m noise_model.digits`); the tool is
`noise_model.tools.digits` (installed: `noise-model-prepare-digits`).
`python -m noise_model.digits --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from noise_model.tools.digits import run  # noqa: E402

if __name__ == "__main__":
    run()
