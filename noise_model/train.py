"""Trains one stage (or every stage) of Xiao et al.'s noisy-label model, Caffe-style.

A thin entry point kept at its documented path (`python -m noise_model.train`); the tool is
`noise_model.tools.train` (installed: `noise-model-train`).
`python -m noise_model.train --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from noise_model.tools.train import run  # noqa: E402

if __name__ == "__main__":
    run()
