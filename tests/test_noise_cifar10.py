"""CIFAR-10 reading, the noisy protocol (docs/originals.md#noisy-label-model-cifar-10-protocol), its CLI and the array pipeline."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import noise_fixtures
from noise_model.data import cifar10
from noisylabels.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "noise_model", "cifar10.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _assert_same_data(loaded, written):
    train_images, train_labels, test_images, test_labels = loaded
    assert train_images.dtype == np.uint8 and train_images.shape == written["train_images"].shape
    np.testing.assert_array_equal(train_images, written["train_images"])
    np.testing.assert_array_equal(train_labels, written["train_labels"])
    np.testing.assert_array_equal(test_images, written["test_images"])
    np.testing.assert_array_equal(test_labels, written["test_labels"])
    assert train_labels.dtype == np.int64 and test_labels.dtype == np.int64


# ---------------------------------------------------------------------------------------
# Reading.


def test_python_version_with_original_layout(tmp_path):
    written = noise_fixtures.write_cifar10_python(str(tmp_path), num_train=60, num_test=20)
    _assert_same_data(cifar10.load_cifar10(str(tmp_path)), written)


def test_python_version_str_keys_directly_in_dir(tmp_path):
    written = noise_fixtures.write_cifar10_python(str(tmp_path), num_train=60, num_test=20,
                                                  subdir="", str_keys=True, legacy_numpy=False)
    _assert_same_data(cifar10.load_cifar10(str(tmp_path)), written)


def test_pixel_order_is_chw_in_the_file(tmp_path):
    # One hand-made record: red plane 1, green 2, blue 3, and pixel (0, 1) of red = 7.
    row = np.concatenate([np.full(1024, 1), np.full(1024, 2), np.full(1024, 3)]).astype(np.uint8)
    row[1] = 7
    batch_dir = tmp_path / "cifar-10-batches-bin"
    batch_dir.mkdir()
    for name in noise_fixtures.CIFAR_TRAIN_FILES + [noise_fixtures.CIFAR_TEST_FILE]:
        (batch_dir / (name + ".bin")).write_bytes(bytes([4]) + row.tobytes())
    train_images, train_labels, _, _ = cifar10.load_cifar10(str(tmp_path))
    assert train_images.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(train_images[0, 5, 5], [1, 2, 3])
    np.testing.assert_array_equal(train_images[0, 0, 1], [7, 2, 3])
    np.testing.assert_array_equal(train_labels, [4] * 5)


@pytest.mark.parametrize("subdir", ["cifar-10-batches-bin", ""])
def test_binary_version(tmp_path, subdir):
    written = noise_fixtures.write_cifar10_binary(str(tmp_path), num_train=50, num_test=10,
                                                  seed=3, subdir=subdir)
    _assert_same_data(cifar10.load_cifar10(str(tmp_path)), written)


class _RunsCode:
    """Unpickling this would create a directory: the restricted unpickler must refuse."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_refuses_pickled_code(tmp_path):
    noise_fixtures.write_cifar10_python(str(tmp_path), num_train=10, num_test=5)
    target = str(tmp_path / "created_by_pickle")
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(pickle.dumps({b"data": _RunsCode(target), b"labels": []}, protocol=2))
    with pytest.raises(InputError) as err:
        cifar10.load_cifar10(str(tmp_path))
    assert "data_batch_2" in str(err.value)
    assert "posix.mkdir" in str(err.value) or "os.mkdir" in str(err.value)
    assert not os.path.exists(target)


def test_missing_batches_are_listed(tmp_path):
    noise_fixtures.write_cifar10_python(str(tmp_path), num_train=10, num_test=5)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    os.remove(tmp_path / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(InputError) as err:
        cifar10.load_cifar10(str(tmp_path))
    message = str(err.value)
    assert "data_batch_3" in message and "test_batch" in message and "data_batch_1" not in message


def test_nothing_found(tmp_path):
    with pytest.raises(InputError, match="no CIFAR-10 batches found"):
        cifar10.load_cifar10(str(tmp_path))


@pytest.mark.parametrize("batch, expected", [
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "'data' must be"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "'data' must be"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels must be in"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "missing key 'labels'"),
])
def test_bad_python_batch_layout(tmp_path, batch, expected):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(InputError, match=expected) as err:
        cifar10.read_python_batch(str(path))
    assert str(path) in str(err.value)


def test_bad_binary_batches(tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes(b"\x00" * 3000)
    with pytest.raises(InputError, match="multiple of the 3073-byte record"):
        cifar10.read_binary_batch(str(short))
    bad_label = tmp_path / "label.bin"
    bad_label.write_bytes(bytes([11]) + b"\x00" * 3072)
    with pytest.raises(InputError, match="label 11"):
        cifar10.read_binary_batch(str(bad_label))


def test_truncated_pickle(tmp_path):
    noise_fixtures.write_cifar10_python(str(tmp_path), num_train=10, num_test=5)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="not a readable CIFAR-10 python batch") as err:
        cifar10.load_cifar10(str(tmp_path))
    assert "test_batch" in str(err.value)


# ---------------------------------------------------------------------------------------
# The protocol.


def _protocol(noise_level=0.5, num_clean=100, seed=0, num_train=500):
    data = noise_fixtures.make_cifar10_arrays(num_train=num_train, num_test=40, seed=7)
    protocol = cifar10.build_noisy_protocol(data["train_images"], data["train_labels"],
                                            data["test_images"], data["test_labels"],
                                            noise_level, num_clean, seed)
    return data, protocol


def _row_index(images):
    """Maps each image's bytes to its row (the fixture's random images are distinct)."""
    index = {img.tobytes(): i for i, img in enumerate(images)}
    assert len(index) == len(images)
    return index


def test_protocol_splits_follow_spec():
    data, protocol = _protocol()
    true = data["train_labels"]
    images = data["train_images"]
    splits = protocol["splits"]
    assert set(splits) == set(cifar10.SPLITS)

    clean_images, clean_table = splits["clean_train"]
    np.testing.assert_array_equal(clean_images, images[:100])
    np.testing.assert_array_equal(clean_table[:, 0], true[:100])
    clean_noisy = clean_table[:, 1]

    # C only has mass where the clean subset shows that confusion; columns sum to 1 or 0.
    matrix_c = protocol["matrix_c"]
    seen = np.zeros((10, 10), bool)
    seen[clean_noisy[clean_noisy != true[:100]], true[:100][clean_noisy != true[:100]]] = True
    assert np.all(matrix_c[~seen] == 0)
    np.testing.assert_allclose(matrix_c.sum(axis=0)[seen.any(axis=0)], 1.0)

    # Noise types by docs/originals.md#noisy-label-model-matrix-c-noise-types-synthetic-noise, computed here from the pairs and C.
    expected_types = np.where(clean_noisy == true[:100], 0,
                              np.where(matrix_c[clean_noisy, true[:100]] <= 1 / 9, 1, 2))
    np.testing.assert_array_equal(clean_table[:, 2], expected_types)

    # ntype splits: the clean pairs, 80 / 20 in order.
    nt_images, nt_table = splits["ntype_train"]
    np.testing.assert_array_equal(nt_images, images[:80])
    np.testing.assert_array_equal(nt_table, clean_table[:80])
    nt_images, nt_table = splits["ntype_test"]
    np.testing.assert_array_equal(nt_images, images[80:100])
    np.testing.assert_array_equal(nt_table, clean_table[80:])

    # Mixed set: every training image once, shuffled; labels by docs/originals.md#noisy-label-model-cifar-10-protocol.
    mixed_images, mixed_table = splits["mixed_train"]
    rows = np.array([_row_index(images)[img.tobytes()] for img in mixed_images])
    assert sorted(rows) == list(range(500))
    assert not np.array_equal(rows, np.arange(500))
    is_clean = rows < 100
    np.testing.assert_array_equal(mixed_table[is_clean, 0], true[rows[is_clean]])
    np.testing.assert_array_equal(mixed_table[is_clean, 1], -1)
    np.testing.assert_array_equal(mixed_table[is_clean, 2], expected_types[rows[is_clean]])
    np.testing.assert_array_equal(mixed_table[~is_clean, 0], -1)
    np.testing.assert_array_equal(mixed_table[~is_clean, 2], -1)
    noisy_only = mixed_table[~is_clean, 1]
    assert np.all((noisy_only >= 0) & (noisy_only < 10))
    # Level 0.5 over 400 labels: the flip rate is 0.5 ± 0.1 (about 4 standard deviations).
    assert abs(np.mean(noisy_only != true[rows[~is_clean]]) - 0.5) < 0.1

    test_images, test_table = splits["test"]
    np.testing.assert_array_equal(test_images, data["test_images"])
    np.testing.assert_array_equal(test_table, np.stack(
        [data["test_labels"], -np.ones(40, int), -np.ones(40, int)], axis=1))
    for _, table in splits.values():
        assert table.dtype == np.int64 and table.shape[1] == 3

    np.testing.assert_allclose(protocol["mean_image"], images.astype(np.float64).mean(axis=0),
                               rtol=1e-6)
    assert protocol["mean_image"].dtype == np.float32


@pytest.mark.parametrize("level", [0.0, 1.0])
def test_protocol_noise_level_extremes(level):
    data, protocol = _protocol(noise_level=level, num_train=200, num_clean=50)
    flipped = protocol["noisy_labels"] != data["train_labels"]
    assert np.all(flipped) if level == 1.0 else not np.any(flipped)
    assert protocol["stats"]["actual_noise_rate"] == level


def test_protocol_is_seeded():
    _, first = _protocol(seed=4)
    _, again = _protocol(seed=4)
    _, other = _protocol(seed=5)
    np.testing.assert_array_equal(first["splits"]["mixed_train"][1], again["splits"]["mixed_train"][1])
    assert not np.array_equal(first["splits"]["mixed_train"][1], other["splits"]["mixed_train"][1])


def test_num_clean_out_of_range():
    with pytest.raises(InputError, match="--num_clean"):
        _protocol(num_clean=501)


# ---------------------------------------------------------------------------------------
# Command line and the array pipeline.


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("cifar")
    written = noise_fixtures.write_cifar10_binary(str(base / "raw"), num_train=300, num_test=70)
    out = base / "prepared"
    result = subprocess.run([sys.executable, SCRIPT, "--data_dir=%s" % (base / "raw"),
                             "--output_dir=%s" % out, "--num_clean=100", "--noise_level=0.4",
                             "--seed=2"], capture_output=True, text=True, env=ENV, timeout=120)
    return written, out, result


def test_cli_writes_the_prepared_layout(prepared):
    written, out, result = prepared
    assert result.returncode == 0, result.stderr
    assert "noise rate" in result.stderr and "Estimated C" in result.stderr
    expected = {"metadata.json", "mean_image.npy", "matrix_q.npy", "matrix_q.txt",
                "matrix_c.npy", "matrix_c.txt"}
    expected |= {"%s_%s.npy" % (s, kind) for s in cifar10.SPLITS for kind in ("images", "labels")}
    assert set(os.listdir(out)) == expected  # no temporary files left behind
    metadata = json.loads((out / "metadata.json").read_text())
    assert (metadata["dataset"], metadata["num_classes"], metadata["image_size"]) == ("cifar10", 10, 32)
    sizes = {"clean_train": 100, "mixed_train": 300, "ntype_train": 80, "ntype_test": 20, "test": 70}
    for split, size in sizes.items():
        images = np.load(out / ("%s_images.npy" % split))
        labels = np.load(out / ("%s_labels.npy" % split))
        assert images.dtype == np.uint8 and images.shape == (size, 32, 32, 3)
        assert labels.dtype == np.int64 and labels.shape == (size, 3)
    mean = np.load(out / "mean_image.npy")
    assert mean.dtype == np.float32
    np.testing.assert_allclose(mean, written["train_images"].mean(axis=0), rtol=1e-5)
    matrix_q = np.load(out / "matrix_q.npy")
    np.testing.assert_allclose(np.diag(matrix_q), 0.6)
    np.testing.assert_allclose(np.loadtxt(out / "matrix_c.txt"), np.load(out / "matrix_c.npy"), atol=1e-6)


CLI_ERRORS = [
    ("noise_level_above_1", ["--noise_level=1.5"], ["--noise_level=1.5", "not a number in the range [0.0, 1.0]"]),
    ("noise_level_negative", ["--noise_level=-0.1"], ["--noise_level=-0.1", "not a number in the range"]),
    ("noise_level_nan", ["--noise_level=nan"], ["--noise_level=nan", "must be a finite number"]),
    ("num_clean_negative", ["--num_clean=-3"], ["--num_clean=-3", "not integer >= 2"]),
    ("num_clean_1", ["--num_clean=1"], ["--num_clean=1", "not integer >= 2"]),
    ("seed_negative", ["--seed=-1"], ["--seed=-1", "not a non-negative integer"]),
    ("no_data_dir", ["--data_dir"], ["--data_dir", "must have a value other than None"]),
    ("no_output_dir", ["--output_dir"], ["--output_dir", "must have a value other than None"]),
    ("output_dir_empty", ["--output_dir="], ["--output_dir=: must not be empty"]),
    ("missing_data_dir", ["--data_dir=/nonexistent/cifar"], ["/nonexistent/cifar", "directory not found"]),
]


@pytest.mark.parametrize("args, expected", [case[1:] for case in CLI_ERRORS], ids=[case[0] for case in CLI_ERRORS])
def test_cli_errors(tmp_path, args, expected):
    """Each bad flag is one stderr line naming the flag and its value, exit status 2, no output.

    A bare `--data_dir` / `--output_dir` in `args` leaves that flag out."""
    base = {"--data_dir": "--data_dir=%s" % tmp_path, "--output_dir": "--output_dir=%s" % (tmp_path / "out")}
    for arg in args:
        base.pop(arg.split("=")[0], None)
    given = list(base.values()) + [arg for arg in args if "=" in arg]
    result = subprocess.run([sys.executable, "-m", "noise_model.cifar10"] + given,
                            capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert all(part in lines[0] for part in expected), lines[0]
    assert not (tmp_path / "out").exists()


def test_array_pipeline(prepared):
    from noise_model.data import datasets

    _, out, _ = prepared
    out = str(out)
    metadata = datasets.read_metadata(out)
    assert (metadata["dataset"], metadata["num_classes"], metadata["image_size"]) == ("cifar10", 10, 32)
    assert datasets.split_size("cifar10", out, "mixed_train") == 300
    images = np.load(os.path.join(out, "ntype_test_images.npy"))
    labels = np.load(os.path.join(out, "ntype_test_labels.npy"))
    mean = np.load(os.path.join(out, "mean_image.npy"))

    # Evaluation: one pass in file order, the last partial batch kept.
    batches = list(datasets.make_dataset("cifar10", out, "ntype_test", 8, training=False))
    assert [len(b[0]) for b in batches] == [8, 8, 4]
    got_images = np.concatenate([b[0].numpy() for b in batches])
    got_labels = np.concatenate([b[1].numpy() for b in batches])
    assert got_images.dtype == np.float32 and got_labels.dtype == np.int64
    np.testing.assert_allclose(got_images, images.astype(np.float32) - mean, atol=1e-4)
    np.testing.assert_array_equal(got_labels, labels)
    dropped = list(datasets.make_dataset("cifar10", out, "ntype_test", 8, training=False,
                                         drop_remainder=True))
    assert [len(b[0]) for b in dropped] == [8, 8]

    # Training: full batches, shuffled, seeded, repeating past the end of the split.
    def first_batches(seed, count=4):
        data = datasets.make_dataset("cifar10", out, "ntype_test", 8, training=True, seed=seed)
        return [b[1].numpy() for _, b in zip(range(count), data)]

    run, rerun, other = first_batches(1), first_batches(1), first_batches(2)
    assert all(b.shape == (8, 3) for b in run)
    np.testing.assert_array_equal(np.concatenate(run), np.concatenate(rerun))
    assert not np.array_equal(np.concatenate(run), np.concatenate(other))
    assert not np.array_equal(np.concatenate(run)[:20], labels)

    matrix_c = datasets.load_matrix_c(out, 10)
    assert matrix_c.dtype == np.float32
    np.testing.assert_allclose(matrix_c, np.load(os.path.join(out, "matrix_c.npy")), rtol=1e-6)


def test_pipeline_input_errors(prepared, tmp_path):
    from noise_model.data import datasets

    _, out, _ = prepared
    with pytest.raises(InputError, match="not digits"):
        datasets.make_dataset("digits", str(out), "test", 8, training=False)
    with pytest.raises(InputError, match="unknown cifar10 split"):
        datasets.make_dataset("cifar10", str(out), "clean_val", 8, training=False)
    with pytest.raises(InputError, match="metadata.json"):
        datasets.read_metadata(str(tmp_path))
    with pytest.raises(InputError, match="expected \\[14, 14\\]"):
        datasets.load_matrix_c(str(out), 14)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "matrix_c.npy", -np.eye(3))
    with pytest.raises(InputError, match="negative"):
        datasets.load_matrix_c(str(bad), 3)
