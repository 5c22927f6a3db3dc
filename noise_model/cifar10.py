"""Prepares CIFAR-10 with synthetic label noise.

A thin entry point kept at its documented path (`python -m noise_model.cifar10`); the tool is
`noise_model.tools.cifar10` (installed: `noise-model-prepare-cifar10`).
`python -m noise_model.cifar10 --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from noise_model.tools.cifar10 import run  # noqa: E402

if __name__ == "__main__":
    run()
