"""bench/compare_cleanlab.py: a clear exit without the optional cleanlab, and cleanlab's verdicts."""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "compare_cleanlab.py")


def test_without_cleanlab_exits_2_with_an_install_hint(tmp_path):
    # sys.modules["cleanlab"] = None makes `import cleanlab` raise ImportError, as when absent.
    code = ("import runpy, sys; sys.modules['cleanlab'] = None; sys.argv = [%r, '--work_dir=%s']; "
            "runpy.run_path(%r, run_name='__main__')" % (SCRIPT, tmp_path / "work", SCRIPT))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "cleanlab is not installed" in result.stderr and "pip install" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "work").exists()


def test_cleanlab_verdicts_on_the_quickstart_data():
    pytest.importorskip("cleanlab")
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from compare_cleanlab import cleanlab_verdicts

    from cleannet.quickstart import noisy_digits

    _, labels, noisy, (_, _, test) = noisy_digits(0, 0.3)
    verdicts = cleanlab_verdicts(0, 0.3)
    assert verdicts.shape == test.shape and verdicts.dtype == bool
    truth = noisy[test] == labels[test]
    # far better than trusting every label (error = the noise rate, about 0.3)
    assert np.mean(verdicts != truth) < 0.5 * np.mean(~truth)
