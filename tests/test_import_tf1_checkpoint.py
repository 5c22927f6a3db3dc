"""util/import_tf1_checkpoint.py: a TF1 checkpoint of the original graph, imported and scored.

The TF1 checkpoints are written here with tf.compat.v1 exactly as the original graph names
its variables (tf.contrib.layers.fully_connected under variable scopes, a Momentum
optimizer's slots, an int32 global_step), including the original's layout where the
directory itself is the checkpoint prefix (files DIR/.index, DIR/.data-00000-of-00001).
"""

import functools
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import process_control

from cleannet.checkpoints import make_checkpoint, read_config, restore
from cleannet.metrics import similarity
from cleannet.model import CleanNet
from noisylabels.errors import InputError
from cleannet.tools.import_tf1_checkpoint import import_tf1_checkpoint

IMG_DIM = 10
NUM_REF = 4
STEP = 1234
# (scope, layer, fan_in, units) of the original graph's dense layers.
TF1_LAYERS = (
    ("query_encoder", "fully_connected", IMG_DIM, 256),
    ("query_encoder", "fully_connected_1", 256, 128),
    ("query_encoder", "fully_connected_2", 128, 256),
    ("query_encoder", "fully_connected_3", 256, IMG_DIM),
    ("ref_set_encoder", "fully_connected", IMG_DIM, 512),
    ("ref_set_encoder", "fully_connected_1", 512, 256),
    ("ref_set_encoder", "fully_connected_2", 256, 256),
    ("ref_set_encoder", "fully_connected_3", 256, 128),
)


def random_tf1_arrays(seed):
    """TF1 variable name → random float32 array (weights, non-zero biases, context)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for scope, layer, fan_in, units in TF1_LAYERS:
        limit = np.sqrt(6.0 / (fan_in + units))
        arrays["%s/%s/weights" % (scope, layer)] = rng.uniform(-limit, limit, (fan_in, units)).astype(np.float32)
        arrays["%s/%s/biases" % (scope, layer)] = rng.uniform(-0.2, 0.2, units).astype(np.float32)
    arrays["ref_set_encoder/context"] = rng.normal(scale=1.0, size=256).astype(np.float32)
    return arrays


def write_tf1_checkpoint(save_path, arrays, global_step=STEP, skip=(), save_global_step=None):
    """Saves `arrays` as the original TF1 graph would, with tf.compat.v1.train.Saver.

    Args:
      save_path: Saver save path: "DIR/" gives the original's layout DIR/.index, ...
      arrays: from random_tf1_arrays.
      global_step: value of the int32 `global_step` variable.
      skip: variable names to leave out.
      save_global_step: passed to Saver.save (adds "-STEP" to the prefix).

    Returns:
      The prefix Saver reports.
    """
    graph = tf.Graph()
    with graph.as_default():
        if "global_step" not in skip:
            step = tf.compat.v1.Variable(global_step, name="global_step", trainable=False)
        trainables = []
        for scope in ("query_encoder", "ref_set_encoder"):
            with tf.compat.v1.variable_scope(scope):
                if scope == "ref_set_encoder" and "ref_set_encoder/context" not in skip:
                    trainables.append(tf.compat.v1.get_variable(
                        "context", initializer=arrays["ref_set_encoder/context"]))
                for layer_scope, layer, _, _ in TF1_LAYERS:
                    if layer_scope != scope:
                        continue
                    with tf.compat.v1.variable_scope(layer):
                        for kind in ("weights", "biases"):
                            name = "%s/%s/%s" % (scope, layer, kind)
                            if name not in skip:
                                trainables.append(tf.compat.v1.get_variable(kind, initializer=arrays[name]))
        # The Momentum optimizer's slots: VAR/Momentum, same shape as VAR.
        for var in trainables:
            with tf.compat.v1.variable_scope(var.op.name):
                tf.compat.v1.get_variable("Momentum", initializer=np.full(var.shape, 7.0, np.float32),
                                          trainable=False)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, save_path, global_step=save_global_step)


def numpy_similarity(arrays, query, reference, embed_norm="log"):
    """The original graph's forward pass in NumPy from the TF1 arrays: cos [B] (float64)."""
    a = {k: v.astype(np.float64) for k, v in arrays.items()}

    def fc(x, scope, layer):
        return np.tanh(x @ a["%s/%s/weights" % (scope, layer)] + a["%s/%s/biases" % (scope, layer)])

    def unit(x):
        return x / np.sqrt(np.maximum(np.sum(x ** 2, axis=-1, keepdims=True), 1e-12))

    if embed_norm == "log":
        v_q, v_s = np.log(query + 1.0), np.log(reference + 1.0)
    else:
        v_q, v_s = unit(query.astype(np.float64)), unit(reference.astype(np.float64))
    phi_q = fc(fc(v_q, "query_encoder", "fully_connected"), "query_encoder", "fully_connected_1")
    h = fc(fc(v_s, "ref_set_encoder", "fully_connected"), "ref_set_encoder", "fully_connected_1")
    u = fc(h, "ref_set_encoder", "fully_connected_2")
    logits = u @ a["ref_set_encoder/context"]
    alpha = np.exp(logits - logits.max(axis=1, keepdims=True))
    alpha /= alpha.sum(axis=1, keepdims=True)
    phi_s = fc(np.einsum("br,brk->bk", alpha, h), "ref_set_encoder", "fully_connected_3")
    return np.sum(unit(phi_s) * unit(phi_q), axis=1)


def restore_imported(checkpoint_dir, embed_norm="log"):
    """Restores the latest checkpoint of `checkpoint_dir` into a fresh CleanNet: (model, step, path)."""
    path = tf.train.latest_checkpoint(checkpoint_dir)
    assert path is not None
    model = CleanNet(NUM_REF, IMG_DIM, embed_norm).build_variables()
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    restore(make_checkpoint(model, step), path, IMG_DIM, NUM_REF, embed_norm)
    return model, int(step.numpy()), path


def assert_scores_match(model, arrays, embed_norm="log", seed=0):
    rng = np.random.default_rng(seed)
    query = rng.uniform(0.0, 4.0, (6, IMG_DIM)).astype(np.float32)
    reference = rng.uniform(0.0, 4.0, (6, NUM_REF, IMG_DIM)).astype(np.float32)
    phi_s, _, phi_q, _ = model((query, reference), training=False)
    expected = numpy_similarity(arrays, query, reference, embed_norm)
    assert np.ptp(expected) > 0.01  # the scores differ between samples
    np.testing.assert_allclose(similarity(phi_s, phi_q).numpy(), expected, atol=1e-5)


run_cli = functools.partial(process_control.run_cli, "util/import_tf1_checkpoint.py")


@pytest.fixture(scope="module")
def arrays():
    return random_tf1_arrays(0)


@pytest.fixture(scope="module")
def original_layout(tmp_path_factory, arrays):
    """The original train.py's layout: DIR/.index, DIR/.data-00000-of-00001, DIR/checkpoint."""
    directory = str(tmp_path_factory.mktemp("tf1_original"))
    write_tf1_checkpoint(directory + "/", arrays)
    assert os.path.exists(os.path.join(directory, ".index"))
    return directory


def test_cli_imports_original_layout_and_scores_match(tmp_path, original_layout, arrays):
    out_dir = str(tmp_path / "imported")
    result = run_cli("--tf1_checkpoint=%s/" % original_layout, "--checkpoint_dir=%s" % out_dir,
                     "--num_ref=%d" % NUM_REF)
    assert result.returncode == 0, result.stderr
    assert os.path.exists(os.path.join(out_dir, "ckpt-%d.index" % STEP))
    assert "ref_set_encoder/context" in result.stderr  # the mapping is logged
    model, step, path = restore_imported(out_dir)
    assert step == STEP
    assert os.path.basename(path) == "ckpt-%d" % STEP
    assert read_config(path) == {"img_dim": IMG_DIM, "num_ref": NUM_REF, "embed_norm": "log"}
    assert_scores_match(model, arrays)


def test_function_imports_directory_without_trailing_slash_and_l2norm(tmp_path, original_layout, arrays):
    saved = import_tf1_checkpoint(original_layout, str(tmp_path), num_ref=NUM_REF, embed_norm="l2_norm")
    assert saved == os.path.join(str(tmp_path), "ckpt-%d" % STEP)
    assert read_config(saved)["embed_norm"] == "l2norm"
    model, step, _ = restore_imported(str(tmp_path), embed_norm="l2norm")
    assert step == STEP
    assert_scores_match(model, arrays, embed_norm="l2norm", seed=1)


def test_invalid_state_file_pointer_falls_back_to_directory_prefix(tmp_path, original_layout, arrays):
    moved = str(tmp_path / "moved")
    shutil.copytree(original_layout, moved)
    with open(os.path.join(moved, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "/nonexistent/train/checkpoints/"\n')
    out_dir = str(tmp_path / "imported")
    import_tf1_checkpoint(moved, out_dir, num_ref=NUM_REF)
    model, step, _ = restore_imported(out_dir)
    assert step == STEP
    assert_scores_match(model, arrays, seed=2)
    # No state file at all: the same.
    os.remove(os.path.join(moved, "checkpoint"))
    out_dir2 = str(tmp_path / "imported2")
    import_tf1_checkpoint(moved + "/", out_dir2, num_ref=NUM_REF)
    assert restore_imported(out_dir2)[1] == STEP


def test_prefix_form_and_state_file_form(tmp_path):
    arrays = random_tf1_arrays(5)
    tf1_dir = tmp_path / "tf1"
    tf1_dir.mkdir()
    prefix = write_tf1_checkpoint(str(tf1_dir / "model.ckpt"), arrays, global_step=77, save_global_step=77)
    assert prefix == str(tf1_dir / "model.ckpt-77")
    # A checkpoint prefix.
    import_tf1_checkpoint(prefix, str(tmp_path / "from_prefix"), num_ref=NUM_REF)
    model, step, _ = restore_imported(str(tmp_path / "from_prefix"))
    assert step == 77
    assert_scores_match(model, arrays, seed=3)
    # The directory, through its valid `checkpoint` state file.
    import_tf1_checkpoint(str(tf1_dir), str(tmp_path / "from_dir"), img_dim=IMG_DIM, num_ref=NUM_REF)
    model, step, _ = restore_imported(str(tmp_path / "from_dir"))
    assert step == 77
    assert_scores_match(model, arrays, seed=4)


def test_cli_refuses_wrong_img_dim(tmp_path, original_layout):
    out_dir = tmp_path / "imported"
    result = run_cli("--tf1_checkpoint=%s" % original_layout, "--checkpoint_dir=%s" % out_dir,
                     "--img_dim=2048")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "2048" in last and str(IMG_DIM) in last
    assert "Traceback" not in result.stderr
    assert not out_dir.exists() or not os.listdir(out_dir)


@pytest.mark.parametrize("missing", ["ref_set_encoder/context", "query_encoder/fully_connected_3/biases",
                                     "global_step"])
def test_missing_variable_refused(tmp_path, arrays, missing):
    tf1_dir = tmp_path / "tf1"
    tf1_dir.mkdir()
    write_tf1_checkpoint(str(tf1_dir) + "/", arrays, skip=(missing,))
    with pytest.raises(InputError, match=missing):
        import_tf1_checkpoint(str(tf1_dir), str(tmp_path / "out"), num_ref=NUM_REF)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_missing_or_unreadable_checkpoint_refused(tmp_path):
    with pytest.raises(InputError, match="tf1_checkpoint"):
        import_tf1_checkpoint(str(tmp_path / "nowhere" / "model.ckpt-5"), str(tmp_path / "out"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no TF1 checkpoint"):
        import_tf1_checkpoint(str(empty), str(tmp_path / "out"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ".index").write_bytes(b"not a checkpoint index")
    with pytest.raises(InputError, match="unreadable"):
        import_tf1_checkpoint(str(broken), str(tmp_path / "out"))


def test_bad_arguments_refused(tmp_path, original_layout):
    with pytest.raises(InputError, match="--checkpoint_dir"):
        import_tf1_checkpoint(original_layout, original_layout)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="file: --checkpoint_dir: exists and is not a directory"):
        import_tf1_checkpoint(original_layout, str(tmp_path / "file"))


CLI_FLAG_ERRORS = [
    # id, flags ("{tmp}": tmp_path; a bare name leaves that flag out), parts of the one error line
    ("unknown_embed_norm", ["--embed_norm=l1norm"],
     ["flag --embed_norm=l1norm:", "one of <log|l2norm|l2_norm|no_norm>"]),
    ("num_ref_0", ["--num_ref=0"], ["flag --num_ref=0:", "not a positive integer"]),
    ("img_dim_0", ["--img_dim=0"], ["flag --img_dim=0:", "not a positive integer"]),
    ("no_tf1_checkpoint", ["--tf1_checkpoint"], ["flag --tf1_checkpoint=None:", "must have a value other than None"]),
    ("no_checkpoint_dir", ["--checkpoint_dir"], ["flag --checkpoint_dir=None:", "must have a value other than None"]),
    ("missing_tf1_checkpoint", ["--tf1_checkpoint={tmp}/none/model.ckpt-1"],
     ["{tmp}/none/model.ckpt-1: --tf1_checkpoint: no TF1 checkpoint found"]),
]


@pytest.mark.parametrize("args, expected", [case[1:] for case in CLI_FLAG_ERRORS],
                         ids=[case[0] for case in CLI_FLAG_ERRORS])
def test_cli_flag_errors_come_before_tensorflow(tmp_path, original_layout, args, expected):
    """A bad or missing flag, or a TF1 checkpoint path naming nothing, is one stderr line naming
    it, exit status 2, and TensorFlow is never imported (python's import-time report lists every
    module imported)."""
    defaults = {"--tf1_checkpoint": "--tf1_checkpoint=%s" % original_layout,
                "--checkpoint_dir": "--checkpoint_dir=%s" % (tmp_path / "out")}
    error = process_control.run_flag_error_without_tensorflow("util/import_tf1_checkpoint.py", defaults, args, tmp_path)
    assert all(part.format(tmp=tmp_path) in error for part in expected), error
    assert not (tmp_path / "out").exists()


def _snapshot(directory):
    """{name: bytes} of every file in `directory` (flat)."""
    return {n: open(os.path.join(directory, n), "rb").read() for n in sorted(os.listdir(directory))}


def _existing_run(directory, steps):
    """A train.py-like directory holding checkpoints at `steps` (its own CheckpointManager)."""
    model = CleanNet(NUM_REF, IMG_DIM, "log").build_variables()
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    manager = tf.train.CheckpointManager(make_checkpoint(model, step), str(directory), max_to_keep=10,
                                         checkpoint_name="ckpt")
    for s in steps:
        step.assign(s)
        manager.save(checkpoint_number=s)
    return _snapshot(directory)


def test_non_empty_directory_refused_without_flag(tmp_path, original_layout):
    """Today's defect: an import deleted the oldest checkpoints of a run and became its latest."""
    run_dir = tmp_path / "run"
    before = _existing_run(run_dir, [1, 2, 3, 4, 5, 6])
    with pytest.raises(InputError, match="is not empty.*--add_to_existing") as err:
        import_tf1_checkpoint(original_layout, str(run_dir), num_ref=NUM_REF)
    assert str(err.value).startswith(str(run_dir) + ": --checkpoint_dir: ")
    assert _snapshot(run_dir) == before
    assert os.path.basename(tf.train.latest_checkpoint(str(run_dir))) == "ckpt-6"


def test_add_to_existing_keeps_every_checkpoint(tmp_path, original_layout, arrays):
    run_dir = tmp_path / "run"
    before = _existing_run(run_dir, [1, 2, 3, 4, 5, 6])
    saved = import_tf1_checkpoint(original_layout, str(run_dir), num_ref=NUM_REF, add_to_existing=True)
    after = _snapshot(run_dir)
    for name, data in before.items():  # every old checkpoint file is still there, unchanged
        if name != "checkpoint":
            assert after[name] == data, name
    assert os.path.basename(saved) == "ckpt-%d" % STEP
    model, step, path = restore_imported(str(run_dir))
    assert step == STEP and path == saved
    assert_scores_match(model, arrays, seed=5)


def test_checkpoint_of_the_same_step_is_never_replaced(tmp_path, original_layout):
    run_dir = tmp_path / "run"
    before = _existing_run(run_dir, [STEP])
    with pytest.raises(InputError, match="already holds a checkpoint of step %d" % STEP):
        import_tf1_checkpoint(original_layout, str(run_dir), num_ref=NUM_REF, add_to_existing=True)
    assert _snapshot(run_dir) == before


def test_cli_refuses_non_empty_directory(tmp_path, original_layout):
    out_dir = tmp_path / "data"
    out_dir.mkdir()
    (out_dir / "train.npy").write_bytes(b"user data")
    result = run_cli("--tf1_checkpoint=%s" % original_layout, "--checkpoint_dir=%s" % out_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: %s: --checkpoint_dir: is not empty (holds train.npy)" % out_dir), last
    assert _snapshot(out_dir) == {"train.npy": b"user data"}
