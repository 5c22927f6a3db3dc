"""The bad-input catalogue (docs/errors.md): every row is a test here or an existing test.

Each CLI case builds its bad input in tmp_path, runs the tool in a subprocess and checks:
non-zero exit (2), the last stderr line starts with "error:" and names the file (and the
line and field for text files), no traceback, and no output or temporary file left in
the output directory. train.py's data-file cases run `cleannet.trainer.train` in-process
(one TensorFlow start-up for all of them) and check the same `InputError` message that
the CLI prints; two train.py cases also go through the CLI to check the wrapper.
"""

import os
import shutil
import pickle

import numpy as np
import pytest

from cleannet_fixtures import write_cleannet_data
from process_control import ROOT, run_cli

from noisylabels.errors import InputError
from noisylabels.fileio import save_npy

CLASSES = ["apple", "banana", "cherry"]
IMG_DIM, NUM_REF = 4, 2


def run_tool(script, args):
    return run_cli(script, *args)


def assert_one_line_error(proc, *expected_parts):
    """Exit 2, last stderr line 'error: ...' containing every part, no traceback."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:"), last
    for part in expected_parts:
        assert part in last, (part, last)
    return last


def write_text(path, text, newline="\n"):
    with open(path, "w", newline="") as f:
        f.write(text.replace("\n", newline))
    return str(path)


def features_text(values):
    return ",".join(repr(float(v)) for v in values)


GOOD = "k1\tapple\t1\t1.0,2.0,3.0,4.0\n"


# ---------------------------------------------------------------------------------------
# convert_data.py: one subprocess per case (no TensorFlow, about a second each).

CONVERT_CASES = [
    # id, split, tsv text, class list text, extra flags, expected parts ("{tsv}" / "{classes}")
    ("wrong_column_count", "train", GOOD + "k2\t1\t1,2,3,4\n", None, [],
     ["{tsv}:2:", "expected 4 or 5 tab-separated columns, found 3"]),
    ("not_a_number", "train", GOOD + "k2\tapple\t1\t1,x,3,4\n", None, [],
     ["{tsv}:2:", "feature:", "value 2 ('x') is not a number"]),
    ("nan", "train", GOOD + "k2\tapple\t1\t1,nan,3,4\n", None, [],
     ["{tsv}:2:", "feature:", "nan/inf at value 2"]),
    ("inf", "val", GOOD + "k2\tapple\t0\t1,2,3,-inf\n", None, [],
     ["{tsv}:2:", "feature:", "nan/inf at value 4"]),
    ("dim_vs_img_dim", "train", GOOD, None, ["--img_dim=5"],
     ["{tsv}:1:", "feature:", "4 values, expected 5 (from --img_dim)"]),
    ("dim_vs_first_row", "train", GOOD + "k2\tapple\t1\t1,2,3\n", None, [],
     ["{tsv}:2:", "feature:", "3 values, expected 4 (from line 1)"]),
    ("unknown_class", "all", "k1\tapple\t1,2,3,4\nk2\tdurian\t1,2,3,4\n", None, [],
     ["{tsv}:2:", "class_name:", "unknown class 'durian'", "{classes}"]),
    ("empty_tsv", "train", "", None, [], ["{tsv}:", "no rows"]),
    ("empty_class_list", "train", GOOD, "\n", [], ["{classes}:", "empty class list"]),
    ("duplicate_class", "train", GOOD, "apple\nbanana\napple\n", [],
     ["{classes}:3:", "duplicate class name 'apple' (first on line 1)"]),
    ("bad_vlabel", "train", GOOD + "k2\tapple\t2\t1,2,3,4\n", None, [],
     ["{tsv}:2:", "vlabel:", "expected 1, 0 or -1, found '2'"]),
    ("bad_vlabel_text", "val", GOOD + "k2\tapple\tyes\t1,2,3,4\n", None, [],
     ["{tsv}:2:", "vlabel:", "found 'yes'"]),
    ("ref_id_out_of_range", "ref", "apple\t0\t1,2\napple\t5\t1,2\n", None, ["--num_ref=2"],
     ["{tsv}:2:", "ref_id:", "out of range"]),
    ("boolean_feature", "train", GOOD + "k2\tapple\t1\t1,True,3,4\n", None, [],
     ["{tsv}:2:", "feature:", "value 2 ('True') is not a number"]),
    ("line_too_long", "all", "k1\tapple\t1,2,3,4\nk2\tapple\t" + "1," * 40000 + "1\n", None, ["--img_dim=4"],
     ["{tsv}:2:", "line is longer than any valid row can be (more than 65792 bytes"]),
]


@pytest.mark.parametrize("case", CONVERT_CASES, ids=[c[0] for c in CONVERT_CASES])
def test_convert_data_bad_input(tmp_path, case):
    _, split, tsv_text, classes_text, flags, expected = case
    classes = write_text(tmp_path / "classes.txt",
                         classes_text if classes_text is not None else "\n".join(CLASSES) + "\n")
    tsv = write_text(tmp_path / "in.tsv", tsv_text)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_tool("util/convert_data.py", ["--split=" + split, "--class_list=" + classes,
                                             "--data_path=" + tsv, "--output_dir=" + str(out)] + flags)
    assert_one_line_error(proc, *[p.format(tsv=tsv, classes=classes) for p in expected])
    assert os.listdir(out) == []  # no output, no temporary file


@pytest.mark.parametrize("with_url", [False, True])
def test_convert_data_crlf_and_trailing_newline_work(tmp_path, with_url):
    """Positive case: CRLF line ends, a trailing newline and trailing empty lines parse."""
    rng = np.random.default_rng(0)
    feats = rng.random((5, IMG_DIM)).astype(np.float32)
    class_ids = [0, 2, 1, 2, 0]
    vlabels = [1, 0, -1, 1, 0]
    url = "\thttp://h/x,y.jpg" if with_url else ""
    text = "".join("k%d%s\t%s\t%d\t%s\n" % (i, url, CLASSES[c], v, features_text(f))
                   for i, (f, c, v) in enumerate(zip(feats, class_ids, vlabels)))
    classes = write_text(tmp_path / "classes.txt", "\n".join(CLASSES) + "\n\n", newline="\r\n")
    tsv = write_text(tmp_path / "in.tsv", text + "\n", newline="\r\n")
    proc = run_tool("util/convert_data.py", ["--split=train", "--class_list=" + classes,
                                             "--data_path=" + tsv, "--output_dir=" + str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    array = np.load(tmp_path / "train.npy")
    keep = [i for i, v in enumerate(vlabels) if v != -1]
    expected = np.concatenate([feats[keep], np.array([[class_ids[i], vlabels[i]] for i in keep])], axis=1)
    np.testing.assert_array_equal(array, expected.astype(np.float32))


# ---------------------------------------------------------------------------------------
# find_reference.py and noise_model/noise.py: fast CLIs.

def _write_all_npy(path, counts, rng):
    rows = []
    for c, n in enumerate(counts):
        block = np.concatenate([rng.random((n, IMG_DIM)), np.full((n, 1), c)], axis=1)
        rows.append(block)
    save_npy(path, np.concatenate(rows).astype(np.float32))


def test_find_reference_num_ref_larger_than_class(tmp_path):
    classes = write_text(tmp_path / "classes.txt", "\n".join(CLASSES) + "\n")
    _write_all_npy(tmp_path / "all.npy", [6, 2, 6], np.random.default_rng(0))
    out = tmp_path / "out"
    out.mkdir()
    proc = run_tool("util/find_reference.py", ["--class_list=" + classes, "--input_npy=%s" % (tmp_path / "all.npy"),
                                               "--output_dir=%s" % out, "--num_ref=3", "--img_dim=4",
                                               "--num_workers=1"])
    assert_one_line_error(proc, str(tmp_path / "all.npy"), "class 'banana' (id 1) has 2 samples",
                          "fewer than --num_ref=3")
    assert os.listdir(out) == []


def test_find_reference_pickle_needs_flag(tmp_path):
    classes = write_text(tmp_path / "classes.txt", "\n".join(CLASSES) + "\n")
    legacy = np.empty(3, dtype=object)
    for c in range(3):
        legacy[c] = [np.ones(IMG_DIM, np.float32) * c] * 3
    np.save(tmp_path / "all.npy", legacy, allow_pickle=True)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_tool("util/find_reference.py", ["--class_list=" + classes, "--input_npy=%s" % (tmp_path / "all.npy"),
                                               "--output_dir=%s" % out, "--num_ref=2", "--img_dim=4",
                                               "--num_workers=1"])
    assert_one_line_error(proc, str(tmp_path / "all.npy"), "pickled", "--allow_pickle")
    assert os.listdir(out) == []


NOISE_CASES = [
    ("labels_out_of_range", ["--action=estimate_c", "--num_classes=3", "--clean_labels={clean}",
                             "--noisy_labels={bad}"], ["noisy_labels", "label 3 at index 1 out of range 0..2"]),
    ("matrix_c_not_square", ["--action=noise_types", "--clean_labels={clean}", "--noisy_labels={clean}",
                             "--matrix_c={c_rect}"], ["matrix_c", "expected L×L"]),
    ("matrix_c_negative", ["--action=noise_types", "--clean_labels={clean}", "--noisy_labels={clean}",
                           "--matrix_c={c_neg}"], ["matrix_c", "negative entries"]),
    ("boolean_label", ["--action=estimate_c", "--num_classes=3", "--clean_labels={clean}",
                       "--noisy_labels={boolean}"], ["{boolean}:2: noisy_labels: expected an integer, found 'True'"]),
    ("output_is_input", ["--action=estimate_c", "--num_classes=3", "--clean_labels={clean}",
                         "--noisy_labels={clean}", "--output={clean}"],
     ["{clean}: --output: is also --clean_labels"]),
]


@pytest.mark.parametrize("case", NOISE_CASES, ids=[c[0] for c in NOISE_CASES])
def test_noise_cli_bad_input(tmp_path, case):
    _, args, expected = case
    paths = {"clean": write_text(tmp_path / "clean.txt", "0\n1\n2\n"),
             "bad": write_text(tmp_path / "bad.txt", "0\n3\n2\n"),
             "boolean": write_text(tmp_path / "boolean.txt", "0\nTrue\n2\n"),
             "c_rect": str(tmp_path / "c_rect.npy"), "c_neg": str(tmp_path / "c_neg.npy")}
    np.save(paths["c_rect"], np.ones((3, 2)) / 3)
    c_neg = np.full((3, 3), 0.5)
    c_neg[0, 1] = -0.1
    np.save(paths["c_neg"], c_neg)
    out = tmp_path / "out"
    out.mkdir()
    output = [] if any(a.startswith("--output") for a in args) else ["--output=%s" % (out / "r")]
    before = _snapshot_tree(tmp_path)
    proc = run_tool("noise_model/noise.py", [a.format(**paths) for a in args] + output)
    assert_one_line_error(proc, *[p.format(**paths) for p in expected])
    assert os.listdir(out) == []
    assert _snapshot_tree(tmp_path) == before


@pytest.mark.parametrize("shape, negative, expected", [
    ((3, 2), False, "has shape [3, 2], expected [3, 3]"),
    ((3, 3), True, "has negative entries"),
], ids=["not_square", "negative"])
def test_load_matrix_c_refuses_bad_matrix(tmp_path, shape, negative, expected):
    from noise_model.data import datasets

    matrix = np.full(shape, 1.0 / 3)
    if negative:
        matrix[1, 0] = -0.5
    np.save(tmp_path / "matrix_c.npy", matrix)
    with pytest.raises(InputError) as err:
        datasets.load_matrix_c(str(tmp_path), 3)
    assert str(err.value).startswith(str(tmp_path / "matrix_c.npy") + ": matrix_c: " + expected)


# ---------------------------------------------------------------------------------------
# train.py and inference.py.

def make_data_dir(directory, seed, n_val=8):
    """Tiny valid CleanNet data (img_dim 4, num_ref 2, 3 classes) in cleannet/datafiles.py layouts."""
    return write_cleannet_data(directory, seed, IMG_DIM, len(CLASSES), NUM_REF, n_train=12, n_val=n_val, n_all=9)


def _truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) - 10])


def _pickle_all(path):
    legacy = np.empty(len(CLASSES), dtype=object)
    for c in range(len(CLASSES)):
        legacy[c] = [np.full(IMG_DIM, 0.5, np.float32)] * 3
    os.remove(path)
    np.save(path, legacy, allow_pickle=True)


def _negate_feature(path):
    array = np.load(path)
    array[3, 1] = -0.25
    save_npy(path, array)


# id, file, how to damage it, expected parts of the message
TRAIN_DATA_CASES = [
    ("ref_wrong_shape", "ref.npy", lambda p: save_npy(p, np.ones((3, 3, IMG_DIM), np.float32)),
     ["shape:", "has shape (3, 3, 4), expected [num_class, 2, 4]"]),
    ("ref_wrong_ndim", "ref.npy", lambda p: save_npy(p, np.ones((3, 8), np.float32)),
     ["has shape (3, 8), expected 3 dimensions"]),
    ("train_wrong_width", "train.npy", lambda p: save_npy(p, np.ones((12, 5), np.float32)),
     ["shape:", "expected [N, 6] (img_dim 4 + class id + vlabel)"]),
    ("train_wrong_dtype", "train.npy", lambda p: save_npy(p, np.array([["a"] * 6] * 12)),
     ["has dtype <U1, expected numbers"]),
    ("train_complex_dtype", "train.npy", lambda p: save_npy(p, np.ones((12, 6), np.complex64)),
     ["dtype:", "expected real numbers"]),
    ("val_bad_vlabel", "val.npy", lambda p: save_npy(p, np.c_[np.ones((8, 5)), np.full(8, 2.0)].astype(np.float32)),
     ["vlabel (column 5):", "row 0 has vlabel 2, expected 0 or 1"]),
    ("train_class_id_beyond_ref", "train.npy",
     lambda p: save_npy(p, np.c_[np.ones((12, 4)), np.full(12, 7.0), np.ones(12)].astype(np.float32)),
     ["class id:", "row 0 has class id 7, but there are only 3 classes"]),
    ("all_wrong_shape", "all.npy", lambda p: save_npy(p, np.ones((9, 7), np.float32)),
     ["shape:", "expected [N, 5] (img_dim 4 + class id)"]),
    ("train_truncated", "train.npy", _truncate, ["not a readable .npy file", "could only read"]),
    ("all_pickled", "all.npy", _pickle_all, ["pickled object array", "--allow_pickle"]),
    ("log_of_negative_feature", "train.npy", _negate_feature,
     ["feature:", "has negative features (min -0.25)", "--embed_norm=log"]),
]


def _config(tmp_path, data_dir, **overrides):
    from cleannet.trainer import TrainConfig

    values = dict(data_dir=data_dir, checkpoint_dir=str(tmp_path / "ckpt"), log_dir=str(tmp_path / "log"),
                  img_dim=IMG_DIM, num_ref=NUM_REF, batch_size_sup=4, batch_size_unsup=2, val_batch_size=4,
                  n_step=2, val_interval=1, log_interval=1)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.parametrize("case", TRAIN_DATA_CASES, ids=[c[0] for c in TRAIN_DATA_CASES])
def test_train_refuses_bad_data_file(tmp_path, case):
    from cleannet.trainer import train

    _, name, damage, expected = case
    data_dir = make_data_dir(tmp_path / "data", seed=1)
    path = os.path.join(data_dir, name)
    damage(path)
    with pytest.raises(InputError) as err:
        train(_config(tmp_path, data_dir))
    message = str(err.value)
    assert message.startswith(path + ": "), message
    for part in expected:
        assert part in message, (part, message)
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "log").exists()
    assert sorted(os.listdir(data_dir)) == ["all.npy", "ref.npy", "train.npy", "val.npy"]


TRAIN_FLAG_CASES = [
    ("negative_batch_size_sup", "--batch_size_sup=-4", "flag --batch_size_sup=-4: -4 is not a positive integer"),
    ("negative_batch_size_unsup", "--batch_size_unsup=-1", "flag --batch_size_unsup=-1: -1 is not a non-negative"),
    ("zero_val_batch_size", "--val_batch_size=0", "flag --val_batch_size=0: 0 is not a positive integer"),
    ("dropout_one", "--dropout_rate=1", "flag --dropout_rate=1.0: must be below 1"),
    ("dropout_negative", "--dropout_rate=-0.1", "flag --dropout_rate=-0.1: -0.1 is not a non-negative number"),
    ("zero_val_interval", "--val_interval=0", "flag --val_interval=0: 0 is not a positive integer"),
    ("unknown_embed_norm", "--embed_norm=l1", "flag --embed_norm=l1: value should be one of <log|l2norm|l2_norm|no_norm>"),
    ("infinite_learning_rate", "--learning_rate=inf", "flag --learning_rate=inf: inf is not number <= 10.0"),
    ("nan_learning_rate", "--learning_rate=nan", "flag --learning_rate=nan: must be a finite number greater than 0"),
    ("absurd_learning_rate", "--learning_rate=1e30", "flag --learning_rate=1e30: 1e+30 is not number <= 10.0"),
    ("zero_learning_rate", "--learning_rate=0", "flag --learning_rate=0.0: must be a finite number greater than 0"),
    ("threshold_beyond_cosine", "--val_sim_thres=2", "flag --val_sim_thres=2: 2.0 is not a number in the range [-1.0, 1.0]"),
    ("infinite_neg_weight", "--neg_weight=inf", "flag --neg_weight=inf: inf is not a number in the range [0.0, 1000000.0]"),
    ("nan_weight_decay", "--weight_decay=nan", "flag --weight_decay=nan: must be a finite number"),
    ("unknown_flag", "--learning_rat=0.1", "Unknown command line flag 'learning_rat'"),
    ("mistyped_value", "--n_step=ten", "flag --n_step=ten: invalid literal for int()"),
]


@pytest.mark.parametrize("case", TRAIN_FLAG_CASES, ids=[c[0] for c in TRAIN_FLAG_CASES])
def test_train_refuses_flag_out_of_range(tmp_path, case):
    """Flag errors, absl's own included, are one line and exit 2, before any file is touched."""
    _, flag, expected = case
    proc = run_tool("train.py", ["--data_dir=%s" % tmp_path, "--checkpoint_dir=%s" % (tmp_path / "ckpt"),
                                 "--log_dir=%s" % (tmp_path / "log"), flag])
    assert_one_line_error(proc, expected)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_train_cli_pickle_error(tmp_path):
    """Through the CLI wrapper: one line on stderr, exit 2, no checkpoint written."""
    data_dir = make_data_dir(tmp_path / "data", seed=2)
    common = ["--data_dir=" + data_dir, "--checkpoint_dir=%s" % (tmp_path / "ckpt"),
              "--log_dir=%s" % (tmp_path / "log"), "--img_dim=4", "--num_ref=2", "--batch_size_sup=4",
              "--batch_size_unsup=2", "--val_batch_size=4", "--n_step=2", "--val_interval=1"]
    _pickle_all(os.path.join(data_dir, "all.npy"))
    proc = run_tool("train.py", common)
    assert_one_line_error(proc, os.path.join(data_dir, "all.npy"), "pickled object array", "--allow_pickle")
    assert not (tmp_path / "ckpt").exists()


@pytest.fixture(scope="module")
def checkpoint_img_dim4(tmp_path_factory):
    """A checkpoint of a CleanNet with img_dim 4, num_ref 2 (made in-process)."""
    import tensorflow as tf

    from cleannet import checkpoints
    from cleannet.model import CleanNet

    directory = str(tmp_path_factory.mktemp("ckpt"))
    model = CleanNet(NUM_REF, IMG_DIM, "log", 0.0, 0.0).build_variables()
    step = tf.Variable(3, dtype=tf.int64)
    tf.train.CheckpointManager(checkpoints.make_checkpoint(model, step), directory, max_to_keep=1,
                               checkpoint_name="ckpt").save(checkpoint_number=3)
    return directory


@pytest.mark.parametrize("img_dim, num_ref, expected", [
    (5, NUM_REF, "--img_dim: the checkpoint was made with img_dim=4 but --img_dim=5"),
    (IMG_DIM, 3, "--num_ref: the checkpoint was made with num_ref=2 but --num_ref=3"),
    (IMG_DIM, NUM_REF, "--checkpoint_dir: checkpoint directory not found"),
], ids=["other_img_dim", "other_num_ref", "missing_dir"])
def test_inference_refuses_mismatched_or_missing_checkpoint(tmp_path, checkpoint_img_dim4, img_dim, num_ref,
                                                            expected):
    rng = np.random.default_rng(3)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    save_npy(data_dir / "ref.npy", rng.random((3, num_ref, img_dim)).astype(np.float32))
    classes = write_text(tmp_path / "classes.txt", "\n".join(CLASSES) + "\n")
    tsv = write_text(tmp_path / "in.tsv", "k\tapple\t%s\n" % features_text(rng.random(img_dim)))
    missing = expected.startswith("--checkpoint_dir")
    ckpt = str(tmp_path / "no_such_dir") if missing else checkpoint_img_dim4
    out = tmp_path / "out"
    out.mkdir()
    proc = run_tool("inference.py", ["--data_dir=%s" % data_dir, "--class_list=" + classes,
                                     "--image_feature_list=" + tsv, "--checkpoint_dir=" + ckpt,
                                     "--output_file=%s" % (out / "pred.txt"), "--img_dim=%d" % img_dim,
                                     "--num_ref=%d" % num_ref])
    last = assert_one_line_error(proc, expected)
    assert (ckpt in last) if missing else (os.path.join(ckpt, "ckpt-3") in last)
    assert os.listdir(out) == []


def _flip_a_kernel_byte(directory):
    """Flips one byte in the middle of ckpt-3's data file (inside the largest kernel)."""
    path = os.path.join(directory, "ckpt-3.data-00000-of-00001")
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(os.path.getsize(path) // 2)
        f.write(bytes([byte[0] ^ 0x10]))


def _damaged_inference_file(directory):
    """The inference file train.py writes beside the checkpoint, with a flipped byte."""
    from cleannet.checkpoints import load_trained_model, write_inference_file
    from cleannet.numpy_model import NumpyCleanNet

    model, step, path = load_trained_model(directory)
    written = write_inference_file(NumpyCleanNet.from_keras(model), path, step)
    data = bytearray(open(written, "rb").read())
    data[len(data) // 3] ^= 0x10
    open(written, "wb").write(bytes(data))


def _truncate_the_data_file(directory):
    path = os.path.join(directory, "ckpt-3.data-00000-of-00001")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 3)


def _overwrite_the_index_end(directory):
    path = os.path.join(directory, "ckpt-3.index")
    with open(path, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\0" * 8)


@pytest.mark.parametrize("damage, file_name, expected", [
    (_flip_a_kernel_byte, "ckpt-3", "damaged checkpoint: tensor model/"),
    pytest.param(_truncate_the_data_file, "ckpt-3", "damaged checkpoint", marks=pytest.mark.slow),
    pytest.param(_overwrite_the_index_end, "ckpt-3", "unreadable checkpoint", marks=pytest.mark.slow),
    (_damaged_inference_file, "inference_model.npz", "damaged inference file"),
], ids=["flipped_byte", "truncated_data", "bad_index", "inference_file"])
def test_inference_refuses_a_damaged_checkpoint(tmp_path, checkpoint_img_dim4, damage, file_name, expected):
    """A damaged checkpoint (read with TensorFlow) or inference file (read with NumPy) is
    one line naming it, and nothing is written."""
    ckpt = str(tmp_path / "ckpt")
    shutil.copytree(checkpoint_img_dim4, ckpt)
    damage(ckpt)
    setup = _inference_setup(tmp_path, ckpt)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_tool("inference.py", setup["flags"] + ["--output_file=%s" % (out / "pred.txt")])
    assert_one_line_error(proc, os.path.join(ckpt, file_name), expected)
    assert os.listdir(out) == []


def _inference_setup(tmp_path, checkpoint_dir, feature_rows=None, n_val=8):
    """ref.npy, val.npy, a class list and a TSV for inference.py; returns the common flags."""
    rng = np.random.default_rng(4)
    data_dir = make_data_dir(tmp_path / "data", seed=4, n_val=n_val)
    classes = write_text(tmp_path / "classes.txt", "\n".join(CLASSES) + "\n")
    rows = feature_rows if feature_rows is not None else rng.random((3, IMG_DIM))
    tsv = write_text(tmp_path / "in.tsv", "".join("k%d\t%s\t%s\n" % (i, CLASSES[i % 3], features_text(r))
                                                   for i, r in enumerate(rows)))
    flags = ["--data_dir=" + data_dir, "--class_list=" + classes, "--image_feature_list=" + tsv,
             "--checkpoint_dir=" + checkpoint_dir, "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF]
    return dict(data_dir=data_dir, classes=classes, tsv=tsv, flags=flags)


def _snapshot_tree(*directories):
    """{path: bytes} of every file under the directories."""
    files = {}
    for directory in directories:
        for parent, _, names in os.walk(directory):
            for name in names:
                path = os.path.join(parent, name)
                files[path] = open(path, "rb").read()
    return files


# id, the output flag, which input it names, expected parts
INFERENCE_OUTPUT_CASES = [
    ("output_is_feature_list", "--output_file", "tsv", ["--output_file:", "is also --image_feature_list"]),
    ("output_is_class_list", "--output_file", "classes", ["--output_file:", "is also --class_list"]),
    ("output_is_ref_npy", "--output_file", "ref", ["--output_file:", "is also a file of --data_dir"]),
    ("weights_is_checkpoint_index", "--output_weights", "index", ["--output_weights:", "is also a checkpoint file"]),
]


@pytest.mark.parametrize("case", INFERENCE_OUTPUT_CASES, ids=[c[0] for c in INFERENCE_OUTPUT_CASES])
def test_inference_refuses_output_equal_to_input(tmp_path, checkpoint_img_dim4, case):
    """Today's defect: --output_file equal to --image_feature_list replaced the features."""
    _, flag, which, expected = case
    setup = _inference_setup(tmp_path, checkpoint_img_dim4)
    target = {"tsv": setup["tsv"], "classes": setup["classes"], "ref": os.path.join(setup["data_dir"], "ref.npy"),
              "index": os.path.join(checkpoint_img_dim4, "ckpt-3.index")}[which]
    outputs = ["--output_file=%s" % (tmp_path / "pred.txt"), "--output_weights=%s" % (tmp_path / "w.tsv")]
    outputs = [o if not o.startswith(flag) else "%s=%s" % (flag, target) for o in outputs]
    before = _snapshot_tree(tmp_path, checkpoint_img_dim4)
    proc = run_tool("inference.py", setup["flags"] + outputs)
    assert_one_line_error(proc, target + ": ", *expected)
    assert _snapshot_tree(tmp_path, checkpoint_img_dim4) == before


@pytest.mark.parametrize("mode", ["inference"])
def test_inference_refuses_what_training_refuses(tmp_path, checkpoint_img_dim4, mode):
    """Negative features under --embed_norm=log are refused as train.py refuses them (they were
    written as nan lines). (--mode=val with fewer rows than one batch is scored whole now:
    tests/test_every_row_scored.py.)"""
    rows = np.random.default_rng(5).random((3, IMG_DIM))
    rows[1, 2] = -0.5
    setup = _inference_setup(tmp_path, checkpoint_img_dim4, feature_rows=rows, n_val=3)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_tool("inference.py", setup["flags"] + ["--mode=" + mode, "--batch_size=4",
                                                      "--output_file=%s" % (out / "pred.txt")])
    assert_one_line_error(proc, setup["tsv"] + ":2: feature: has a negative feature (-0.5)", "--embed_norm=log")
    assert os.listdir(out) == []


def test_find_reference_nan_in_all_npy(tmp_path):
    """A NaN feature used to end in an OpenCV k-means traceback."""
    classes = write_text(tmp_path / "classes.txt", "\n".join(CLASSES) + "\n")
    _write_all_npy(tmp_path / "all.npy", [4, 4, 4], np.random.default_rng(0))
    table = np.load(tmp_path / "all.npy")
    table[5, 2] = np.nan
    save_npy(tmp_path / "all.npy", table)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_tool("util/find_reference.py", ["--class_list=" + classes, "--input_npy=%s" % (tmp_path / "all.npy"),
                                               "--output_dir=%s" % out, "--num_ref=2", "--img_dim=4",
                                               "--num_workers=1"])
    assert_one_line_error(proc, "%s: row 5 holds nan or inf" % (tmp_path / "all.npy"))
    assert os.listdir(out) == []


@pytest.mark.parametrize("tool", ["convert_data", "heldout_train_data"])
def test_output_equal_to_input_is_refused(tmp_path, tool):
    """The filtered or converted output would replace the input it is read from."""
    if tool == "convert_data":
        data = write_text(tmp_path / "train.npy", GOOD)  # a TSV that happens to be named like the output
        classes = write_text(tmp_path / "classes.txt", "\n".join(CLASSES) + "\n")
        args = ["--split=train", "--class_list=" + classes, "--data_path=" + data, "--output_dir=%s" % tmp_path]
        expected = "%s: --output_dir: is also --data_path" % data
    else:
        data = write_text(tmp_path / "train.tsv", GOOD)
        keep = write_text(tmp_path / "keep.tsv", "apple\t1\n")
        args = ["--heldout_class_list=" + keep, "--input_file=" + data, "--output_file=" + data]
        expected = "%s: --output_file: is also --input_file" % data
    before = _snapshot_tree(tmp_path)
    proc = run_tool("util/%s.py" % tool, args)
    assert_one_line_error(proc, expected)
    assert _snapshot_tree(tmp_path) == before


# ---------------------------------------------------------------------------------------
# The catalogue itself.

CATALOGUE_ABBREVIATIONS = {"cat": "tests/test_bad_input_catalogue.py", "ex": "tests/test_export_saved_model.py",
                           "hi": "tests/test_import_tf1_checkpoint.py", "hard": "tests/test_input_hardening.py",
                           "c1m": "tests/test_noise_clothing1m.py", "out": "tests/test_output_faults.py",
                           "ext": "tests/test_extract_features.py", "mcl": "tests/test_make_cleaned_list.py",
                           "rd": "tests/test_run_directory.py", "safe": "tests/test_cleannet_run_safety.py",
                           "nsafe": "tests/test_noise_run_safety.py", "help": "tests/test_help.py"}


def catalogued_tests():
    """(row number, file, test function, parameter id or None) for every test docs/errors.md names."""
    import re

    refs = []
    with open(os.path.join(ROOT, "docs", "errors.md"), encoding="utf-8") as f:
        for line in f:
            row = re.match(r"\| (\d+) \|", line)
            if not row:
                continue
            last_file, last_function = None, None
            for item in re.findall(r"`([^`]*)`", line.rstrip().rstrip("|").rsplit("|", 1)[1]):
                match = re.fullmatch(r"(?:([\w/.]+)?::)?(\w+)?(?:\[([^\]]+)\])?", item)
                if not match or not (match.group(2) or match.group(3)):
                    continue
                file_part, function, param = match.groups()
                if file_part is not None:
                    last_file = CATALOGUE_ABBREVIATIONS.get(file_part, file_part)
                last_function = function or last_function
                refs.append((int(row.group(1)), last_file, last_function, param))
    return refs


def test_every_catalogued_test_exists():
    refs = catalogued_tests()
    rows = {r[0] for r in refs}
    assert rows == set(range(1, max(rows) + 1)), "a catalogue row names no test"
    for row, path, function, param in refs:
        assert path is not None and function is not None, row
        source = open(os.path.join(ROOT, path), encoding="utf-8").read()
        assert "def %s(" % function in source, (row, path, function)
        if param is not None:
            assert '"%s"' % param in source, (row, path, function, param)
