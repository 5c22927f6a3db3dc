"""docs/api.md's code blocks and docs/examples/noisy_label_loss.py run as written."""

import os
import re
import subprocess
import sys

import pytest

from process_control import ENV, ROOT

DOC = os.path.join(ROOT, "docs", "api.md")
EXAMPLE = os.path.join(ROOT, "docs", "examples", "noisy_label_loss.py")


def code_blocks(include_slow):
    """The ```python blocks of docs/api.md in order; a block right after `<!-- slow -->`
    only with include_slow."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    blocks = []
    for match in re.finditer(r"(<!-- slow -->\n)?```python\n(.*?)```", text, re.S):
        if include_slow or not match.group(1):
            blocks.append(match.group(2))
    return blocks


def run_python(code_or_path, tmp_path, timeout=900):
    """Runs a script (in a scratch directory, the repository importable); returns stdout."""
    args = [code_or_path] if code_or_path.endswith(".py") else ["-c", code_or_path]
    env = dict(ENV, PYTHONPATH=ROOT + os.pathsep + ENV.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, *args], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_docs_have_the_examples_this_test_runs():
    fast, every = code_blocks(False), code_blocks(True)
    assert len(fast) == 2 and len(every) == 3
    assert "find_label_issues" in every[1] and "CleanNet.load" in fast[1]


def test_api_docs_examples_run(tmp_path):
    """The data block and the CleanNet object's block (fit, score, load, summary)."""
    out = run_python("\n".join(code_blocks(False)), tmp_path)
    assert "ModelConfig(img_dim=64, num_ref=32, embed_norm='l2norm')" in out  # the robust recipe's
    assert "neighbours (1737, 64)" in out  # its class score, against the 1797 - 60 samples outside validation
    assert "share_judged_wrong" in out
    assert os.listdir(tmp_path) == []  # the run went to the block's own temporary directory


@pytest.mark.slow
def test_api_docs_examples_run_with_the_one_call_on_digits(tmp_path):
    out = run_python("\n".join(code_blocks(True)), tmp_path)
    assert re.search(r"\d+ labels judged wrong; detection error 0\.\d+", out), out


def test_noisy_label_loss_example_beats_plain_cross_entropy(tmp_path):
    """The keras-io style example runs, is short, and its clean-label head learns through
    the noise: at least 0.1 more test accuracy than the network trained on the noisy labels."""
    with open(EXAMPLE, encoding="utf-8") as f:
        assert len(f.read().splitlines()) < 150
    out = run_python(EXAMPLE, tmp_path)
    ours = float(re.search(r"test accuracy of the clean-label head: ([0-9.]+)", out).group(1))
    baseline = float(re.search(r"test accuracy of the baseline: ([0-9.]+)", out).group(1))
    assert ours >= baseline + 0.1, out
