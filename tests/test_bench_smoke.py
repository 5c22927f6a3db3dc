"""Smoke tests of the benchmarks (bench/): each runs at a tiny size and prints its ratio.

No timing assertions: the figures are only checked to be positive, finite and consistent
with the printed ratio.
"""

import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _printed(text, label):
    """The number printed on the line starting with `label` (after the indent)."""
    match = re.search(r"^\s+%s\s+([-+0-9.einf]+)" % re.escape(label), text, re.MULTILINE)
    assert match, "no %r line in:\n%s" % (label, text)
    return float(match.group(1))


def _positive(*values):
    for value in values:
        assert math.isfinite(value) and value > 0, values


def test_convert_cli_tiny(tmp_path):
    script = os.path.join(ROOT, "bench", "bench_convert.py")
    result = subprocess.run([sys.executable, script, "--num_rows=30", "--img_dim=16", "--num_classes=4",
                             "--work_dir=%s" % tmp_path], capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for split in ("all", "verified"):
        assert "convert %s TSV: 30 rows x 16 dims" % split in out
    ours, base, speed = (_printed(out, k) for k in ("ours MB/s", "baseline MB/s", "speed ratio ours/baseline"))
    _positive(ours, base, speed, _printed(out, "ours peak RSS"), _printed(out, "RSS ratio ours/baseline"))
    assert math.isclose(speed, ours / base, rel_tol=3e-3)  # 4 significant digits printed
    # Both conversions wrote real outputs of the right shape (checked against each other inside).
    import numpy as np
    assert np.load(tmp_path / "ours" / "train.npy").shape[1] == 16 + 2
    assert np.load(tmp_path / "ours" / "all.npy").shape == (30, 16 + 1)


def test_convert_cli_rejects_bad_size():
    script = os.path.join(ROOT, "bench", "bench_convert.py")
    result = subprocess.run([sys.executable, script, "--num_rows=-3"], capture_output=True, text=True,
                            env=ENV, timeout=60)
    assert result.returncode == 2
    assert "--num_rows" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_tiny(capsys):
    from bench import bench_train

    sizes = dict(num_classes=3, img_dim=8, num_ref=2, num_samples=40, steps=2)
    results = bench_train.run_benchmark(batch_size_sup=4, batch_size_unsup=3, warmup_steps=1, compare_jit=False,
                                        **sizes)
    bench_train.report(results, sizes, (4, 3))
    out = capsys.readouterr().out
    _positive(results["ours"], results["baseline"])
    assert math.isclose(_printed(out, "ratio ours/baseline"), results["ours"] / results["baseline"], rel_tol=1e-3)
    assert math.isclose(_printed(out, "ratio shared/per-sample encoder"), results["ours"] / results["per_sample"],
                        rel_tol=1e-3)
    assert 1 <= results["distinct_classes"] <= 3
    _positive(results["gflops_ours"], results["gflops_matmuls"], results["gflops_per_sample"])


def test_train_flop_count_by_hand():
    """Dense-layer FLOPs of a step, counted by hand for B = 2, R = 3, h = 4, U = 1 class."""
    from bench import bench_train

    def layer(rows, fan_in, units, input_gradient=True):  # forward, kernel grad, input grad
        return 2 * rows * fan_in * units * (3 if input_gradient else 2)

    query = layer(2, 4, 256, False) + layer(2, 256, 128) + layer(2, 128, 256) + layer(2, 256, 4)
    per_sample = query + layer(6, 4, 512, False) + layer(6, 512, 256) + layer(6, 256, 256) + layer(2, 256, 128)
    shared = query + layer(3, 4, 512, False) + layer(3, 512, 256) + layer(3, 256, 256) + layer(1, 256, 128)
    assert bench_train.products_flops(bench_train.step_products(2, 3, 4, 2, 2)) == per_sample
    assert bench_train.products_flops(bench_train.step_products(2, 3, 4, 1, 1)) == shared


def test_train_baseline_batch_is_the_original_layout():
    """The baseline's host batch: reference[i] is ref[class of sample i]; vflag 1 then 0."""
    import numpy as np
    from bench import bench_train
    from bench import common
    from cleannet.trainer import load_tables

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        common.write_cleannet_tables(tmp, 12, 16, 20, 3, 8, 2)
        config = bench_train.make_config(tmp, 3, 8, 2, 4, 3, False)
        tables = load_tables(config)
        query, reference, vlabel, vflag = bench_train.BaselineLoop(config, tables).next_batch()
    assert query.shape == (7, 8) and reference.shape == (7, 2, 8)
    np.testing.assert_array_equal(vflag, [1, 1, 1, 1, 0, 0, 0])
    for i in range(4):
        row = np.flatnonzero((tables.train_features == query[i]).all(axis=1))[0]
        np.testing.assert_array_equal(reference[i], tables.reference[tables.train_class_ids[row]])
        assert vlabel[i] == tables.train_vlabels[row]
    for i in range(4, 7):
        row = np.flatnonzero((tables.all_features == query[i]).all(axis=1))[0]
        np.testing.assert_array_equal(reference[i], tables.reference[tables.all_class_ids[row]])


def test_inference_tiny(capsys):
    from bench import bench_inference

    sizes = dict(num_samples=50, num_classes=3, img_dim=8, num_ref=2, tsv_rows=20, baseline_samples=20)
    results = bench_inference.run_benchmark(batch_size=16, baseline_batch_size=7, **sizes)
    bench_inference.report(results, sizes)
    out = capsys.readouterr().out
    _positive(results["ours"], results["baseline"], results["parse_mb_s"], results["parse_score_mb_s"])
    assert results["max_abs_diff"] < 1e-5  # the cached and per-sample scores agree
    assert math.isclose(_printed(out, "ratio ours/baseline"), results["ours"] / results["baseline"], rel_tol=1e-3)
    assert math.isclose(_printed(out, "ratio parse+score / parse only"),
                        results["parse_score_mb_s"] / results["parse_mb_s"], rel_tol=1e-3)


def test_noise_loss_tiny(capsys):
    from bench import bench_noise_loss

    results = bench_noise_loss.run_benchmark(steps=1, batch_size=6, warmup_steps=1)
    bench_noise_loss.report(results, 1, 6)
    out = capsys.readouterr().out
    _positive(results["joint_ms"], results["baseline_ms"])
    assert math.isclose(_printed(out, "ratio joint/baseline"), results["joint_ms"] / results["baseline_ms"],
                        rel_tol=1e-3)


def test_noise_batch_labels_are_mixed_like_the_cifar_protocol():
    import numpy as np
    from bench import bench_noise_loss

    images, clean, noisy, ntype = bench_noise_loss.make_batch(500)
    assert images.shape == (500, 32, 32, 3)
    np.testing.assert_array_equal(clean >= 0, ntype >= 0)  # noise type known exactly for clean-labelled
    np.testing.assert_array_equal(clean >= 0, noisy < 0)  # one of clean / noisy label per sample
    assert clean.max() < 10 and noisy.max() < 10 and ntype.max() < 3
    c = bench_noise_loss.random_matrix_c(10)
    np.testing.assert_allclose(c.sum(axis=0), 1.0)
    assert np.all(np.diag(c) == 0)


def test_feature_bytes_parse_back():
    """The synthetic TSV writer's feature strings hold the values it claims."""
    import numpy as np
    from bench import common

    values = np.array([[0.0, 0.5, 0.1234567], [0.999999999, 0.25, 0.000001]])
    rows = common.feature_bytes(values, digits=6)
    assert rows[0].tobytes() == b"0.000000,0.500000,0.123456"
    parsed = np.array([[float(x) for x in r.tobytes().split(b",")] for r in rows])
    np.testing.assert_array_equal(parsed, common.parse_written(values))
    np.testing.assert_allclose(parsed, values, atol=1e-6)


@pytest.mark.slow
def test_extract_tiny(capsys, monkeypatch):
    from bench import bench_extract
    from cleannet import feature_extractor

    for name in ("build_backbone", "make_embed_function"):  # the benchmark replaces them; restored afterwards
        monkeypatch.setattr(feature_extractor, name, getattr(feature_extractor, name))
    sizes = dict(num_images=3, width=40, height=36)
    results = bench_extract.run_benchmark(batch_size=2, image_size=32, repeats=1, **sizes)
    bench_extract.report(results, sizes, 2, 32)
    out = capsys.readouterr().out
    _positive(results["ours"], results["baseline"])
    assert math.isclose(_printed(out, "ratio ours / baseline"), results["ours"] / results["baseline"], rel_tol=1e-3)


@pytest.mark.slow
def test_exit_tiny(capsys):
    from bench import bench_exit

    results = bench_exit.run_benchmark(num_classes=3, img_dim=8, num_ref=2, num_samples=80, steps=2, repeats=1)
    bench_exit.report(results)
    _positive(results["ours_exit_s"], results["baseline_exit_s"])
    assert math.isclose(_printed(capsys.readouterr().out, "ratio baseline/ours"), results["ratio"], rel_tol=1e-3)


@pytest.mark.slow
def test_inference_e2e_tiny(capsys):
    from bench import bench_inference_e2e

    sizes = dict(num_rows=30, img_dim=8, num_classes=3, num_ref=2)
    results = bench_inference_e2e.run_benchmark(repeats=1, **sizes)
    bench_inference_e2e.report(results, sizes)
    _positive(results["convert"], results["inference"], results["inference_usual_exit"])
    assert math.isclose(_printed(capsys.readouterr().out, "ratio inference/convert (target <= 2)"),
                        results["ratio"], rel_tol=1e-3)


def test_digits_seeds_table_and_seed_parsing():
    from bench import digits_seeds

    assert digits_seeds.parse_seeds("0,1,2") == [0, 1, 2]
    assert digits_seeds.parse_seeds("1,1") is None and digits_seeds.parse_seeds("-1") is None
    assert digits_seeds.parse_seeds("a") is None
    figures = {0: {"clean": 0.9, "noisy_gt": 0.7, "ntype": 0.3, "joint": 0.95},
               3: {"clean": 0.8, "noisy_gt": 0.9, "ntype": 0.5, "joint": 0.85}}
    table = digits_seeds.format_table(figures, {0: 120.0, 3: 60.0}).splitlines()
    assert table[1].split() == ["0", "0.900", "0.700", "0.300", "0.950", "2.0"]
    assert table[3].split() == ["min", "0.800", "0.700", "0.300", "0.850"]
    assert table[4].split() == ["mean", "0.850", "0.800", "0.400", "0.900"]
    assert table[5].split() == ["max", "0.900", "0.900", "0.500", "0.950"]
