"""Exports a trained CleanNet as a TensorFlow SavedModel for serving.

A thin entry point kept at its documented path; the tool is `cleannet.tools.export_saved_model`
(installed: `cleannet-export-saved-model`). `python util/export_saved_model.py --help` lists its flags.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cleannet.tools.export_saved_model import run  # noqa: E402

if __name__ == "__main__":
    run()
