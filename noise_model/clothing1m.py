"""Prepares Clothing1M's label and key lists.

A thin entry point kept at its documented path (`python -m noise_model.clothing1m`); the tool is
`noise_model.tools.clothing1m` (installed: `noise-model-prepare-clothing1m`).
`python -m noise_model.clothing1m --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from noise_model.tools.clothing1m import run  # noqa: E402

if __name__ == "__main__":
    run()
