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


def _bench():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import compare_cleanlab

    return compare_cleanlab


def test_cleanlab_verdicts_on_a_grid_setting():
    pytest.importorskip("cleanlab")
    bench = _bench()
    data = bench.make_setting(0, 0.3, "uniform", False)
    verdicts = bench.cleanlab_verdicts(data)
    scored = data["scored"]
    assert verdicts.shape == scored.shape and verdicts.dtype == bool
    truth = data["noisy"][scored] == data["labels"][scored]
    # far better than trusting every label (error = the noise rate, about 0.3)
    assert np.mean(verdicts != truth) < 0.5 * np.mean(~truth)


def test_grid_setting_scores_every_unverified_sample_and_the_verified_test_part():
    bench = _bench()
    data = bench.make_setting(1, 0.2, "uniform", True)
    unverified = np.flatnonzero(data["noisy"] >= 5)
    assert np.isin(unverified, data["scored"]).all()
    # verified classes: scored samples are neither in train.npy nor in val.npy
    scored_verified = data["scored"][data["noisy"][data["scored"]] < 5]
    assert not np.isin(scored_verified, np.concatenate([data["train"], data["val"]])).any()
    assert 0.9 < data["features"].max() <= 1.0  # scaled pixels


def test_noise_kinds():
    bench = _bench()
    labels = np.repeat(np.arange(10), 2000)
    for kind in ("uniform", "lookalike"):
        noisy = bench.corrupt(labels, 0.3, kind, np.random.default_rng(0))
        flipped = noisy != labels
        assert abs(flipped.mean() - 0.3) < 0.01  # a flip never keeps the label
        pairs = set(zip(labels[flipped].tolist(), noisy[flipped].tolist()))
        if kind == "lookalike":
            assert pairs == {(a, b) for a, targets in bench.LOOKALIKES.items() for b in targets}
        else:
            assert len(pairs) == 90  # every other class


def test_targets_by_hand():
    bench = _bench()
    cleanlab = np.array([0.10, 0.12, 0.08])  # mean 0.10, worst 0.12
    assert bench.targets_met(np.array([0.07, 0.07, 0.07]), cleanlab, "without") == []
    assert bench.targets_met(np.array([0.08, 0.08, 0.08]), cleanlab, "without") == ["mean>0.75x"]
    assert bench.targets_met(np.array([0.02, 0.02, 0.13]), cleanlab, "without") == ["worst", "sd>2x"]
    assert bench.targets_met(np.array([0.06, 0.06, 0.06]), cleanlab, "with") == ["mean>0.5x"]


@pytest.mark.slow
def test_tiny_grid_and_speed_bench_print_their_tables(tmp_path):
    pytest.importorskip("cleanlab")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, SCRIPT, "--seeds=0", "--rates=0.3", "--kinds=uniform", "--n_step=20",
                             "--results=%s" % (tmp_path / "grid.json")], capture_output=True, text=True, cwd=ROOT,
                            env=env)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 0.3 | uniform")]
    assert len(rows) == 4  # raw and scaled pixels, with and without verification labels
    merged = subprocess.run([sys.executable, SCRIPT, "--merge=%s" % (tmp_path / "grid.json")], capture_output=True,
                            text=True, cwd=ROOT, env=env)
    assert [line for line in merged.stdout.splitlines() if line.startswith("| 0.3 | uniform")] == rows
    speed = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "recipe_speed.py"), "--n_step=20",
                            "--repeats=1"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert speed.returncode == 0, speed.stderr
    assert "robust/relative over paper/threshold: median" in speed.stdout
