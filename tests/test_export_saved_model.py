"""Tests for util/export_saved_model.py: the SavedModel scores exactly as inference.py does."""

import os
import subprocess
import sys

import numpy as np
import pytest

from process_control import run_flag_error_without_tensorflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "util", "export_saved_model.py")
IMG_DIM, NUM_REF, NUM_CLASSES = 12, 3, 4
CLASS_NAMES = ["cat", "dog", "bird", "fish"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A randomly initialised CleanNet saved as a train.py checkpoint, ref.npy, a TSV."""
    import tensorflow as tf

    from cleannet import checkpoints
    from cleannet.model import CleanNet

    root = tmp_path_factory.mktemp("export")
    data_dir, ckpt_dir = root / "data", root / "ckpt"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    np.save(data_dir / "ref.npy", rng.random((NUM_CLASSES, NUM_REF, IMG_DIM)).astype(np.float32) * 3)
    (root / "classes.txt").write_text("".join(n + "\n" for n in CLASS_NAMES))
    tf.keras.utils.set_random_seed(1)
    model = CleanNet(NUM_REF, IMG_DIM, "log").build_variables()
    step = tf.Variable(7, dtype=tf.int64)
    tf.train.CheckpointManager(checkpoints.make_checkpoint(model, step), str(ckpt_dir), 3).save(checkpoint_number=7)
    features = (rng.random((9, IMG_DIM)) * 3).astype(np.float32)
    ids = rng.integers(0, NUM_CLASSES, size=9)
    with open(root / "input.tsv", "w") as f:
        for i, (row, c) in enumerate(zip(features, ids)):
            f.write("k%d\t%s\t%s\n" % (i, CLASS_NAMES[c], ",".join("%.9g" % v for v in row)))
    export_dir = root / "exported"
    args = [sys.executable, SCRIPT, "--checkpoint_dir=%s" % ckpt_dir, "--data_dir=%s" % data_dir,
            "--class_list=%s" % (root / "classes.txt"), "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF,
            "--embed_norm=log", "--export_dir=%s" % export_dir]
    result = subprocess.run(args, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    pred = root / "pred.txt"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "inference.py"), "--mode=inference",
                             "--checkpoint_dir=%s" % ckpt_dir, "--data_dir=%s" % data_dir,
                             "--class_list=%s" % (root / "classes.txt"), "--image_feature_list=%s" % (root / "input.tsv"),
                             "--output_file=%s" % pred, "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF,
                             "--batch_size=4"], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    return dict(root=root, export_dir=export_dir, features=features, ids=ids, args=args,
                expected=np.loadtxt(pred, ndmin=1))


def test_signatures_match_inference_py(trained):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(trained["export_dir"]))
    assert set(loaded.signatures) == {"serving_default", "score_by_name"}
    features = tf.constant(trained["features"])
    by_id = loaded.signatures["serving_default"](features=features,
                                                 class_ids=tf.constant(trained["ids"], tf.int64))
    names = tf.constant([CLASS_NAMES[c] for c in trained["ids"]])
    by_name = loaded.signatures["score_by_name"](features=features, class_names=names)
    assert by_id["similarity"].dtype == tf.float32 and by_id["similarity"].shape == (9,)
    np.testing.assert_allclose(by_id["similarity"].numpy(), trained["expected"], atol=1e-5)
    np.testing.assert_allclose(by_name["similarity"].numpy(), trained["expected"], atol=1e-5)
    # The scores are not trivially equal (a real comparison): they spread over classes.
    assert np.ptp(trained["expected"]) > 1e-3


def test_unknown_class_gives_nan(trained):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(trained["export_dir"]))
    features = tf.constant(trained["features"][:3])
    out = loaded.signatures["score_by_name"](features=features,
                                             class_names=tf.constant(["dog", "zebra", CLASS_NAMES[trained["ids"][2]]]))
    sims = out["similarity"].numpy()
    assert np.isnan(sims[1]) and not np.isnan(sims[0])
    np.testing.assert_allclose(sims[2], trained["expected"][2], atol=1e-5)
    out = loaded.signatures["serving_default"](features=features, class_ids=tf.constant([0, 4, -1], tf.int64))
    assert np.isnan(out["similarity"].numpy()[1:]).all()


def test_reexport_refuses_without_overwrite_and_replaces_with_it(trained):
    """Re-exporting over a SavedModel needs --overwrite; a user's file beside it stays."""
    export_dir = trained["export_dir"]
    (export_dir / "NOTES.txt").write_text("mine")
    before = (export_dir / "saved_model.pb").read_bytes()
    result = subprocess.run(trained["args"], capture_output=True, text=True, env=ENV)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: %s: --export_dir: is not empty (holds NOTES.txt, " % export_dir), last
    assert "--overwrite" in last
    (export_dir / "saved_model.pb").write_bytes(b"stale")  # shows the replacement below
    result = subprocess.run(trained["args"] + ["--overwrite"], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr
    leftovers = [n for n in os.listdir(trained["root"]) if n.startswith(".exported")]
    assert leftovers == []
    assert (export_dir / "NOTES.txt").read_text() == "mine"
    assert (export_dir / "saved_model.pb").read_bytes() not in (b"stale", b"")
    assert len((export_dir / "saved_model.pb").read_bytes()) == len(before)
    test_signatures_match_inference_py(trained)


def _export_in_process(trained, export_dir, overwrite=False):
    from cleannet.tools.export_saved_model import export_saved_model

    root = trained["root"]
    return export_saved_model(str(root / "ckpt"), str(root / "data"), str(root / "classes.txt"), str(export_dir),
                              IMG_DIM, NUM_REF, "log", overwrite=overwrite)


def test_export_never_deletes_a_non_empty_directory(trained, tmp_path):
    """Today's defect: --export_dir pointing at a data directory deleted it with everything in it."""
    from noisylabels.errors import InputError

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.npy").write_bytes(b"precious")
    with pytest.raises(InputError, match="is not empty"):
        _export_in_process(trained, data)
    # Even with --overwrite a file the export did not write is never replaced or removed.
    _export_in_process(trained, data, overwrite=True)
    assert (data / "train.npy").read_bytes() == b"precious"
    assert (data / "saved_model.pb").exists()
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".")) == []


def test_overwrite_never_replaces_savedmodel_entries_it_cannot_prove_it_wrote(trained, tmp_path):
    """Issue 17: --overwrite into a directory the user made deleted its assets/ and variables/."""
    from noisylabels.errors import InputError

    mine = tmp_path / "mine"
    (mine / "assets").mkdir(parents=True)
    (mine / "assets" / "vocab.txt").write_text("user's vocabulary")
    (mine / "variables").mkdir()
    (mine / "variables" / "notes.txt").write_text("user's notes")
    with pytest.raises(InputError) as err:
        _export_in_process(trained, mine, overwrite=True)
    assert str(err.value).startswith("%s: --export_dir: holds assets, variables, but no owner.json" % mine)
    assert (mine / "assets" / "vocab.txt").read_text() == "user's vocabulary"
    assert (mine / "variables" / "notes.txt").read_text() == "user's notes"
    assert sorted(os.listdir(mine)) == ["assets", "variables"]
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


@pytest.mark.parametrize("marker", [b"", b'{"tool": "export_sav', b'{"tool": "someone_else", "format_version": 1, '
                                    b'"settings": {}}'], ids=["empty", "truncated", "other_tool"])
def test_overwrite_with_a_marker_that_proves_nothing_is_one_line(trained, tmp_path, marker):
    from noisylabels.errors import InputError

    target = tmp_path / "exported"
    _export_in_process(trained, target)
    (target / "owner.json").write_bytes(marker)
    before = (target / "saved_model.pb").read_bytes()
    with pytest.raises(InputError) as err:
        _export_in_process(trained, target, overwrite=True)
    assert str(err.value).startswith("%s: " % (target / "owner.json")) and "\n" not in str(err.value)
    assert (target / "saved_model.pb").read_bytes() == before and (target / "owner.json").read_bytes() == marker


def test_overwrite_replaces_a_proven_export_and_keeps_the_rest(trained, tmp_path):
    import json

    target = tmp_path / "exported"
    _export_in_process(trained, target)
    marker = json.loads((target / "owner.json").read_text())
    assert marker["tool"] == "export_saved_model" and marker["settings"]["img_dim"] == IMG_DIM
    (target / "variables" / "stale.bin").write_bytes(b"from an older export")
    (target / "README.txt").write_text("mine")
    _export_in_process(trained, target, overwrite=True)
    assert not (target / "variables" / "stale.bin").exists()  # the proven earlier export was replaced whole
    assert (target / "README.txt").read_text() == "mine"
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


def test_export_is_readable_by_other_users(trained, tmp_path):
    """Directories 0755 and files 0644 under umask 022 (a server may run as another user)."""
    import stat

    old = os.umask(0o022)
    try:
        export_dir, _ = _export_in_process(trained, tmp_path / "served")
    finally:
        os.umask(old)
    modes = {}
    for parent, dirs, files in os.walk(export_dir):
        for name in dirs + files:
            path = os.path.join(parent, name)
            modes[os.path.relpath(path, export_dir)] = stat.S_IMODE(os.stat(path).st_mode)
    modes["."] = stat.S_IMODE(os.stat(export_dir).st_mode)
    assert "variables" in modes and "saved_model.pb" in modes
    for name, mode in modes.items():
        is_dir = os.path.isdir(os.path.join(export_dir, name))
        assert mode == (0o755 if is_dir else 0o644), (name, oct(mode))


def test_wrong_config_is_one_line_error(trained, tmp_path):
    args = [a if not a.startswith("--img_dim") else "--img_dim=13" for a in trained["args"]]
    args = [a if not a.startswith("--export_dir") else "--export_dir=%s" % (tmp_path / "x") for a in args]
    result = subprocess.run(args, capture_output=True, text=True, env=ENV)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "x").exists()


def test_model_settings_left_out_come_from_the_checkpoint(trained, tmp_path):
    """img_dim, num_ref, embed_norm left out: the checkpoint's; one given that disagrees is
    refused before anything is written."""
    from cleannet.tools.export_saved_model import export_saved_model
    from noisylabels.errors import InputError

    root = trained["root"]
    inputs = (str(root / "ckpt"), str(root / "data"), str(root / "classes.txt"))
    with pytest.raises(InputError, match="the checkpoint was made with num_ref=%d but --num_ref=%d"
                       % (NUM_REF, NUM_REF + 1)):
        export_saved_model(*inputs, str(tmp_path / "y"), num_ref=NUM_REF + 1)
    assert not (tmp_path / "y").exists()
    path, step = export_saved_model(*inputs, str(tmp_path / "x"))
    assert step == 7 and os.path.isfile(os.path.join(path, "saved_model.pb"))


CLI_FLAG_ERRORS = [
    # id, flags ("{tmp}": tmp_path; a bare name leaves that flag out), parts of the one error line
    ("no_export_dir", ["--export_dir"], ["flag --export_dir=None:", "must have a value other than None"]),
    ("img_dim_0", ["--img_dim=0"], ["flag --img_dim=0:", "not a positive integer"]),
    ("num_ref_0", ["--num_ref=0"], ["flag --num_ref=0:", "not a positive integer"]),
    ("unknown_embed_norm", ["--embed_norm=l1"], ["flag --embed_norm=l1:", "one of <log|l2norm|l2_norm|no_norm>"]),
    ("missing_ref", ["--data_dir={tmp}/none"], ["{tmp}/none/ref.npy: --data_dir: file not found"]),
    ("missing_class_list", ["--class_list={tmp}/none.txt"], ["{tmp}/none.txt: --class_list: file not found"]),
    ("missing_checkpoint_dir", ["--checkpoint_dir={tmp}/none"],
     ["{tmp}/none: --checkpoint_dir: checkpoint directory not found"]),
]


@pytest.mark.parametrize("args, expected", [case[1:] for case in CLI_FLAG_ERRORS],
                         ids=[case[0] for case in CLI_FLAG_ERRORS])
def test_cli_flag_and_file_errors_come_before_tensorflow(tmp_path, args, expected):
    """A bad or missing flag, or a missing input, is one stderr line naming it, exit status 2,
    and TensorFlow is never imported (python's import-time report lists every module imported)."""
    (tmp_path / "classes.txt").write_text("cat\n")
    np.save(tmp_path / "ref.npy", np.zeros((1, NUM_REF, IMG_DIM), np.float32))
    defaults = {"--checkpoint_dir": "--checkpoint_dir=%s" % tmp_path, "--data_dir": "--data_dir=%s" % tmp_path,
                "--class_list": "--class_list=%s" % (tmp_path / "classes.txt"),
                "--export_dir": "--export_dir=%s" % (tmp_path / "exported")}
    error = run_flag_error_without_tensorflow("util/export_saved_model.py", defaults, args, tmp_path)
    assert all(part.format(tmp=tmp_path) in error for part in expected), error
    assert not (tmp_path / "exported").exists()
