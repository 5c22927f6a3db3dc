"""Test-wide settings: quiet TensorFlow, the repository root on sys.path, a CPU-only run."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """scikit-learn's digits prepared once per session (noise level 0.5, seed 0) for the
    noisy-label stages; tests read it and write their runs elsewhere."""
    from noise_model.data import digits

    out = str(tmp_path_factory.mktemp("digits") / "prepared")
    digits.prepare_digits(out, seed=0)
    return out
