"""Clothing1M list reading, the protocol of docs/originals.md#noisy-label-model-clothing1m-protocol, its CLI and the tf.data pipeline."""

import collections
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

import noise_fixtures
from noise_model.data import clothing1m, noise
from noisylabels.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "noise_model", "clothing1m.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def read_split(path):
    rows = []
    with open(path) as f:
        for line in f:
            key, c, n, z = line.split()
            rows.append((key, int(c), int(n), int(z)))
    return rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("clothing1m") / "root"
    return noise_fixtures.write_clothing1m(str(root), num_images=40, seed=0)


@pytest.fixture(scope="module")
def prepared(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    metadata = clothing1m.prepare_clothing1m(dataset["root"], str(out), seed=0, num_workers=2)
    return out, metadata


def _expected_c_and_type(dataset):
    clean, noisy = dataset["clean"], dataset["noisy"]
    pairs = [k for k in dataset["clean_train"] + dataset["clean_val"] if k in noisy]
    matrix_c = noise.compute_matrix_c([clean[k] for k in pairs], [noisy[k] for k in pairs], 14)

    def ntype(key):
        if key not in clean or key not in noisy:
            return -1
        if clean[key] == noisy[key]:
            return 0
        return 1 if matrix_c[noisy[key], clean[key]] <= 1 / 13 else 2

    return matrix_c, ntype


def test_clean_and_ntype_splits(dataset, prepared):
    out, metadata = prepared
    clean, noisy = dataset["clean"], dataset["noisy"]
    matrix_c, ntype = _expected_c_and_type(dataset)
    np.testing.assert_allclose(np.load(out / "matrix_c.npy"), matrix_c)
    # The fixture's noisy labels are the clean one or the next class: C has mass only there.
    assert np.count_nonzero(matrix_c) <= 14

    def expected_rows(keys):
        return [(k, clean[k], noisy.get(k, -1), ntype(k)) for k in keys]

    for split, keys in (("clean_train", dataset["clean_train"]), ("clean_val", dataset["clean_val"]),
                        ("test", dataset["clean_test"])):
        assert read_split(out / (split + ".txt")) == expected_rows(keys)
        ntype_split = {"clean_train": "ntype_train", "clean_val": "ntype_val", "test": "ntype_test"}[split]
        assert read_split(out / (ntype_split + ".txt")) == expected_rows([k for k in keys if k in noisy])
    assert (metadata["dataset"], metadata["num_classes"], metadata["image_size"]) == ("clothing1m", 14, 227)
    assert metadata["dataset_root"] == os.path.abspath(dataset["root"])
    assert metadata["num_c_pairs"] == len([k for k in dataset["clean_train"] + dataset["clean_val"]
                                           if k in noisy])
    assert json.loads((out / "metadata.json").read_text()) == metadata


def test_mixed_split(dataset, prepared):
    out, _ = prepared
    clean, noisy = dataset["clean"], dataset["noisy"]
    _, ntype = _expected_c_and_type(dataset)
    rows = read_split(out / "mixed_train.txt")
    num_noisy = len(dataset["noisy_train"])
    assert len(rows) == 2 * num_noisy
    counts = collections.Counter(row[0] for row in rows)
    clean_train = set(dataset["clean_train"])
    # Every noisy key once (the key in both lists once more for each time it was drawn),
    # and num_noisy draws from the clean training keys.
    for key in dataset["noisy_train"]:
        assert counts[key] >= 1
    assert sum(n for k, n in counts.items() if k in clean_train) == num_noisy + len(
        clean_train & set(dataset["noisy_train"]))
    assert set(counts) <= clean_train | set(dataset["noisy_train"])
    for key, c, n, z in rows:
        assert c == (clean[key] if key in clean_train else -1)
        assert n == noisy.get(key, -1)
        assert z == (ntype(key) if c >= 0 and n >= 0 else -1)
    assert [r[0] for r in rows[:num_noisy]] != dataset["noisy_train"]  # shuffled


def test_mixed_split_is_seeded(dataset, prepared, tmp_path):
    out, _ = prepared
    clothing1m.prepare_clothing1m(dataset["root"], str(tmp_path / "same"), seed=0)
    clothing1m.prepare_clothing1m(dataset["root"], str(tmp_path / "other"), seed=1)
    first = (out / "mixed_train.txt").read_text()
    assert (tmp_path / "same" / "mixed_train.txt").read_text() == first
    assert (tmp_path / "other" / "mixed_train.txt").read_text() != first


def test_mean_image(dataset, prepared):
    out, _ = prepared
    mean = np.load(out / "mean_image.npy")
    assert mean.dtype == np.float32 and mean.shape == (256, 256, 3)
    # From the RGB arrays the fixture encoded (the JPEGs differ by a few levels).
    expected = np.mean([cv2.resize(dataset["images"][k].astype(np.float32), (256, 256),
                                   interpolation=cv2.INTER_LINEAR)
                        for k in dataset["clean_train"]], axis=0)
    assert np.abs(mean - expected).mean() < 2.0
    assert np.abs(mean - expected).max() < 12.0


def _copy_root(dataset, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(dataset["root"], root)
    return root


def test_crlf_blank_lines_and_no_final_newline(dataset, prepared, tmp_path):
    out, _ = prepared
    root = _copy_root(dataset, tmp_path)
    for name in ("clean_label_kv.txt", "noisy_train_key_list.txt"):
        text = (root / name).read_text()
        (root / name).write_bytes(("\r\n\r\n".join(text.splitlines())).encode())
    clothing1m.prepare_clothing1m(str(root), str(tmp_path / "out"), seed=0)
    for split in clothing1m.SPLITS:
        assert (tmp_path / "out" / (split + ".txt")).read_text() == (out / (split + ".txt")).read_text()


def test_byte_order_mark_and_crlf_in_every_list(dataset, prepared, tmp_path):
    """Lists saved by an editor that adds a byte-order mark prepare exactly as plain ones
    (the BOM used to be read into the first key, and the error named another file)."""
    out, _ = prepared
    root = _copy_root(dataset, tmp_path)
    for name in [clothing1m.CLEAN_KV, clothing1m.NOISY_KV] + list(clothing1m.KEY_LISTS.values()):
        text = (root / name).read_text()
        (root / name).write_bytes(b"\xef\xbb\xbf" + "\r\n".join(text.splitlines()).encode() + b"\r\n")
    clothing1m.prepare_clothing1m(str(root), str(tmp_path / "out"), seed=0)
    for split in clothing1m.SPLITS:
        assert (tmp_path / "out" / (split + ".txt")).read_text() == (out / (split + ".txt")).read_text()


def test_non_utf8_list_is_one_line_naming_file_and_line(dataset, tmp_path):
    root = _copy_root(dataset, tmp_path)
    lines = (root / clothing1m.NOISY_KV).read_bytes().splitlines()
    lines[3] = b"images/caf\xe9.jpg 3"  # Latin-1, not UTF-8
    (root / clothing1m.NOISY_KV).write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError) as err:
        clothing1m.prepare_clothing1m(str(root), str(tmp_path / "out"))
    assert str(err.value).startswith("%s:4: not valid UTF-8 text" % (root / clothing1m.NOISY_KV))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("filename, line, expected", [
    ("clean_label_kv.txt", "images/0/00/img00000.jpg", "expected 'key label'"),
    ("clean_label_kv.txt", "images/0/00/img00000.jpg x", "label: expected an integer, found 'x'"),
    # Python's int() takes these; a label file must not (they were read as 1, 10, 1).
    ("clean_label_kv.txt", "images/0/00/img00000.jpg True", "label: expected an integer, found 'True'"),
    ("clean_label_kv.txt", "images/0/00/img00000.jpg 1_0", "label: expected an integer, found '1_0'"),
    ("noisy_label_kv.txt", "images/a.jpg \u0661", "label: expected an integer"),
    ("noisy_label_kv.txt", "images/a.jpg 0x1", "label: expected an integer, found '0x1'"),
    ("noisy_label_kv.txt", "images/a.jpg 14", "outside [0, 14)"),
    ("noisy_label_kv.txt", "images/a.jpg -1", "outside [0, 14)"),
    ("noisy_label_kv.txt", "images/../../etc/passwd 3", "'..' component"),
    ("noisy_label_kv.txt", "/etc/passwd 3", "absolute path"),
    ("clean_val_key_list.txt", "images/0/00/img00000.jpg extra", "one key per line"),
    ("clean_val_key_list.txt", "images/not_labelled.jpg", "has no label in clean_label_kv.txt"),
])
def test_malformed_lines_name_file_and_line(dataset, tmp_path, filename, line, expected):
    root = _copy_root(dataset, tmp_path)
    lines = (root / filename).read_text().splitlines()
    lines.insert(2, line)
    (root / filename).write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        clothing1m.prepare_clothing1m(str(root), str(tmp_path / "out"))
    assert expected in str(err.value)
    assert "%s:3:" % filename in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_image(dataset, tmp_path):
    root = _copy_root(dataset, tmp_path)
    missing = dataset["noisy_train"][2]
    os.remove(root / missing)
    with pytest.raises(InputError, match="--skip_missing") as err:
        clothing1m.prepare_clothing1m(str(root), str(tmp_path / "out"))
    assert missing in str(err.value)
    metadata = clothing1m.prepare_clothing1m(str(root), str(tmp_path / "out"), skip_missing=True)
    assert metadata["num_missing_skipped"] == 1
    for split in clothing1m.SPLITS:
        assert missing not in (tmp_path / "out" / (split + ".txt")).read_text()
    assert metadata["split_sizes"]["mixed_train"] == 2 * (len(dataset["noisy_train"]) - 1)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_bad_image(dataset, tmp_path, damage):
    root = _copy_root(dataset, tmp_path)
    bad = dataset["clean_val"][1]
    data = (root / bad).read_bytes()
    (root / bad).write_bytes(b"not an image" if damage == "garbage" else data[:len(data) * 2 // 3])
    with pytest.raises(InputError, match="on_bad_image=skip") as err:
        clothing1m.prepare_clothing1m(str(root), str(tmp_path / "out"), on_bad_image="stop")
    assert bad in str(err.value)
    metadata = clothing1m.prepare_clothing1m(str(root), str(tmp_path / "out"), on_bad_image="skip")
    assert metadata["num_bad_images_skipped"] == 1 and metadata["on_bad_image"] == "skip"
    assert bad not in (tmp_path / "out" / "clean_val.txt").read_text()
    assert metadata["split_sizes"]["clean_val"] == len(dataset["clean_val"]) - 1


def test_cli(dataset, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, SCRIPT, "--data_root=%s" % dataset["root"],
                             "--output_dir=%s" % out, "--seed=0", "--on_bad_image=skip"],
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Split sizes" in result.stderr
    expected = {s + ".txt" for s in clothing1m.SPLITS}
    expected |= {"matrix_c.npy", "matrix_c.txt", "mean_image.npy", "metadata.json"}
    assert set(os.listdir(out)) == expected
    assert json.loads((out / "metadata.json").read_text())["on_bad_image"] == "skip"


FLAG_ERRORS = [
    ("on_bad_image_unknown", ["--on_bad_image=ignore"], ["--on_bad_image=ignore", "one of <stop|skip>"]),
    ("seed_negative", ["--seed=-1"], ["--seed=-1", "not a non-negative integer"]),
    ("num_workers_negative", ["--num_workers=-2"], ["--num_workers=-2", "not a non-negative integer"]),
    ("no_data_root", ["--data_root"], ["--data_root=None", "must have a value other than None"]),
    ("no_output_dir", ["--output_dir"], ["--output_dir=None", "must have a value other than None"]),
    ("output_dir_empty", ["--output_dir="], ["--output_dir=: must not be empty"]),
    ("missing_data_root", ["--data_root={missing}"], ["{missing}", "directory not found"]),
]


@pytest.mark.parametrize("args, expected", [case[1:] for case in FLAG_ERRORS], ids=[case[0] for case in FLAG_ERRORS])
def test_cli_flag_errors(dataset, tmp_path, args, expected):
    """A bad flag is one stderr line naming the flag and the value, exit status 2, nothing
    written. A bare `--data_root` / `--output_dir` in `args` leaves that flag out."""
    missing = str(tmp_path / "no_such_root")
    base = {"--data_root": "--data_root=%s" % dataset["root"], "--output_dir": "--output_dir=%s" % (tmp_path / "x")}
    for arg in args:
        base.pop(arg.split("=")[0], None)
    given = list(base.values()) + [arg.format(missing=missing) for arg in args if "=" in arg]
    bad = subprocess.run([sys.executable, "-m", "noise_model.clothing1m"] + given,
                         capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), bad.stderr
    assert all(part.format(missing=missing) in lines[0] for part in expected), lines[0]
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------
# The tf.data pipeline.


def test_pipeline_eval_is_centre_crop_in_order(dataset, prepared):
    import tensorflow as tf

    from noise_model.data import datasets

    out, _ = prepared
    mean = np.load(out / "mean_image.npy")
    rows = read_split(out / "test.txt")
    batches = list(datasets.make_dataset("clothing1m", str(out), "test", 3, training=False))
    assert [len(b[0]) for b in batches] == [3, 2]
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(labels, [r[1:] for r in rows])
    assert images.shape == (5, 227, 227, 3) and images.dtype == np.float32
    for image, row in zip(images, rows):
        decoded = tf.io.decode_jpeg(tf.io.read_file(os.path.join(dataset["root"], row[0])))
        resized = tf.image.resize(decoded, [256, 256]).numpy() - mean
        np.testing.assert_allclose(image, resized[14:241, 14:241], atol=1e-3)
    assert datasets.split_size("clothing1m", str(out), "test") == 5


def _find_crop(image, candidates):
    """(key, top, left, mirrored) of the 227 window of a candidate that equals `image`."""
    found = []
    for (key, mirrored), full in candidates.items():
        corners = np.lib.stride_tricks.sliding_window_view(full[:, :, 0], (3, 3))[:30, :30]
        hits = np.argwhere(np.all(np.abs(corners - image[:3, :3, 0]) < 1e-3, axis=(2, 3)))
        for top, left in hits:
            if np.allclose(full[top:top + 227, left:left + 227], image, atol=1e-3):
                found.append((key, int(top), int(left), mirrored))
    assert len(found) == 1, found
    return found[0]


def test_pipeline_training_is_seeded_random_crop(dataset, prepared):
    import tensorflow as tf

    from noise_model.data import datasets

    out, _ = prepared
    mean = np.load(out / "mean_image.npy")

    def first(seed):
        data = datasets.make_dataset("clothing1m", str(out), "clean_train", 4, training=True,
                                     seed=seed)
        return [(x.numpy(), y.numpy()) for _, (x, y) in zip(range(4), data)]

    run, rerun, other = first(5), first(5), first(6)
    for (x, y), (x2, y2) in zip(run, rerun):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(run, other))

    # 16 samples from 10 keys (the pipeline repeats): each is a 227 window of one resized,
    # mean-subtracted clean training image, mirrored or not, with that image's labels.
    labels = {r[0]: r[1:] for r in read_split(out / "clean_train.txt")}
    candidates = {}
    for key in labels:
        decoded = tf.io.decode_jpeg(tf.io.read_file(os.path.join(dataset["root"], key)))
        full = tf.image.resize(decoded, [256, 256]).numpy() - mean
        candidates[(key, False)] = full
        candidates[(key, True)] = full[:, ::-1]
    crops = []
    for x, y in run:
        assert x.shape == (4, 227, 227, 3) and y.shape == (4, 3)
        for image, label in zip(x, y):
            key, top, left, mirrored = _find_crop(image, candidates)
            assert tuple(label) == labels[key]
            crops.append((key, top, left, mirrored))
    assert len({c[0] for c in crops}) == 10  # a full pass over the split before repeating
    assert len({(c[1], c[2]) for c in crops}) > 1  # random offsets, not the centre only
    assert {c[3] for c in crops} == {False, True}


def test_pipeline_skips_images_that_fail_at_training_time(dataset, tmp_path):
    from noise_model.data import datasets

    root = _copy_root(dataset, tmp_path)
    out = tmp_path / "out"
    clothing1m.prepare_clothing1m(str(root), str(out), on_bad_image="skip")
    (root / dataset["clean_test"][0]).write_bytes(b"broken after preparation")
    data = datasets.make_dataset("clothing1m", str(out), "test", 2, training=False)
    assert sum(len(b[1]) for b in data) == len(dataset["clean_test"]) - 1


def test_pipeline_rejects_keys_outside_the_root(prepared, tmp_path):
    from noise_model.data import datasets

    out, _ = prepared
    copy = tmp_path / "prepared"
    shutil.copytree(out, copy)
    with open(copy / "test.txt", "a") as f:
        f.write("../outside.jpg 1 -1 -1\n")
    with pytest.raises(InputError, match="'..' component") as err:
        datasets.make_dataset("clothing1m", str(copy), "test", 2, training=False)
    assert "test.txt:6" in str(err.value)
