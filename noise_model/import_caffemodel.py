"""Imports a Caffe `.caffemodel` into our Keras models.

A thin entry point kept at its documented path (`python -m noise_model.import_caffemodel`); the tool is
`noise_model.tools.import_caffemodel` (installed: `noise-model-import-caffemodel`).
`python -m noise_model.import_caffemodel --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from noise_model.tools.import_caffemodel import run  # noqa: E402

if __name__ == "__main__":
    run()
