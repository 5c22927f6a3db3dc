"""Synthetic label noise, the confusion matrix C and noise types from label files.

A thin entry point kept at its documented path (`python -m noise_model.noise`); the tool is
`noise_model.tools.noise` (installed: `noise-model-noise`).
`python -m noise_model.noise --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from noise_model.tools.noise import run  # noqa: E402

if __name__ == "__main__":
    run()
