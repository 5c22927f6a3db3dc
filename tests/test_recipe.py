"""train.py --recipe=robust and the relative decision's neighbours class score, against NumPy."""

import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from cleannet_fixtures import write_cleannet_data

from cleannet import calibration, losses, scoring
from cleannet.config import RECIPES, TrainConfig
from cleannet.model import CleanNet
from cleannet.numpy_model import NumpyCleanNet
from cleannet.scoring import NEIGHBOURS, ClassEmbeddingScorer
from noisylabels.errors import InputError
from noisylabels.fileio import save_npy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMG_DIM, CLASSES, NUM_REF = 8, 3, 2


def config(data_dir, tmp_path, **overrides):
    values = dict(data_dir=str(data_dir), checkpoint_dir=str(tmp_path / "ckpt"), log_dir=str(tmp_path / "log"),
                  img_dim=IMG_DIM, num_ref=NUM_REF, batch_size_sup=4, batch_size_unsup=4, val_batch_size=4,
                  n_step=3, val_interval=3, log_interval=3)
    values.update(overrides)
    return TrainConfig(**values)


def test_cross_class_loss_by_hand():
    cos_other = [0.6, 0.05, 0.3, 0.9]
    weight = [1.0, 1.0, 0.1, 0.0]
    # weight · 5 · max(0, cos − 0.1): 2.5, 0, 0.1, 0.
    got = losses.cross_class_loss(cos_other, weight, 5.0).numpy()
    np.testing.assert_allclose(got, [2.5, 0.0, 0.1, 0.0], atol=1e-6)


def test_recipes_and_flags_resolve_embed_norm():
    assert RECIPES["paper"].cross_class_weight == 0 and RECIPES["paper"].confident_weight == 0
    assert RECIPES["paper"].embed_norm is None and RECIPES["paper"].class_score == "references"

    def flag_values(recipe, embed_norm_given):
        values = {name: types.SimpleNamespace(value=getattr(TrainConfig(), name), present=False)
                  for name in TrainConfig.__dataclass_fields__}
        values["recipe"] = types.SimpleNamespace(value=recipe, present=True)
        if embed_norm_given:
            values["embed_norm"] = types.SimpleNamespace(value="log", present=True)
        return values

    assert TrainConfig.from_flags(flag_values("robust", False)).embed_norm == "l2norm"
    assert TrainConfig.from_flags(flag_values("robust", True)).embed_norm == "log"  # given: kept
    assert TrainConfig.from_flags(flag_values("paper", False)).embed_norm == "log"


def test_run_record_names_the_recipe_only_when_not_the_papers(tmp_path):
    from cleannet.trainer import run_record

    data_dir = write_cleannet_data(tmp_path / "data", img_dim=IMG_DIM, num_classes=CLASSES, num_ref=NUM_REF)
    assert "recipe" not in run_record(config(data_dir, tmp_path))["settings"]  # earlier runs still resume
    assert run_record(config(data_dir, tmp_path, recipe="robust"))["settings"]["recipe"] == "robust"


def numpy_cosine(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_cross_class_terms_pair_each_sample_with_another_class(tmp_path):
    from cleannet.trainer import Trainer, load_tables

    data_dir = write_cleannet_data(tmp_path / "data", img_dim=IMG_DIM, num_classes=CLASSES, num_ref=NUM_REF)
    c = config(data_dir, tmp_path, recipe="robust", embed_norm="l2norm")
    trainer = Trainer(c, load_tables(c))
    rng = np.random.default_rng(0)
    class_ids = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    class_embeddings = trainer.model.encode_classes(tf.constant(trainer.tables.reference)).numpy()
    # Each query close to the sum of the other classes' embeddings: cosines to them well above 0.1.
    phi_q = (class_embeddings.sum(0) - class_embeddings[class_ids]
             + 0.01 * rng.normal(size=(8, 128))).astype(np.float32)
    vlabel = np.array([1, 0, 1, 1, 0, 0, 0, 0], np.float32)
    vflag = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)
    cos_sim = np.array([0.9, 0.9, 0.9, 0.9, 0.8, 0.2, 0.6, -0.1], np.float32)
    got = trainer._cross_class_terms(tf.constant(phi_q), tf.constant(class_ids), tf.constant(vlabel),
                                     tf.constant(vflag), tf.constant(cos_sim)).numpy()
    r = RECIPES["robust"]
    # Row weights: verified rows cross_class_weight·vlabel; unverified rows confident_weight·1[cos ≥ confident_cos].
    weight = np.where(vflag == 1, r.cross_class_weight * vlabel, r.confident_weight * (cos_sim >= r.confident_cos))
    for i in range(len(phi_q)):
        candidates = [weight[i] * 5.0 * max(0.0, numpy_cosine(class_embeddings[[k]], phi_q[[i]])[0] - 0.1)
                      for k in range(CLASSES) if k != class_ids[i]]  # one of the other classes, never its own
        assert min(abs(got[i] - v) for v in candidates) < 1e-5, (i, got[i], candidates)
    assert got[1] == 0 and got[5] == 0 and got[7] == 0 and np.any(got > 0)


def test_paper_recipe_never_adds_the_cross_class_terms_and_robust_does(tmp_path, monkeypatch):
    from cleannet import trainer as trainer_module

    data_dir = write_cleannet_data(tmp_path / "data", img_dim=IMG_DIM, num_classes=CLASSES, num_ref=NUM_REF)
    calls = []
    original = trainer_module.Trainer._cross_class_terms
    monkeypatch.setattr(trainer_module.Trainer, "_cross_class_terms",
                        lambda self, *a: calls.append(1) or original(self, *a))
    trainer_module.train(config(data_dir, tmp_path / "paper"))
    assert calls == []
    trainer_module.train(config(data_dir, tmp_path / "robust", recipe="robust", embed_norm="l2norm"))
    assert calls  # traced into the training step


def test_robust_recipe_refuses_a_single_class(tmp_path):
    from cleannet.trainer import Trainer, load_tables

    data_dir = write_cleannet_data(tmp_path / "data", img_dim=IMG_DIM, num_classes=1, num_ref=NUM_REF)
    c = config(data_dir, tmp_path, recipe="robust", embed_norm="l2norm", batch_size_unsup=0)
    with pytest.raises(InputError, match="--recipe.*pass --recipe=paper"):
        Trainer(c, load_tables(c))


def test_robust_recipe_refuses_a_class_with_one_sample(tmp_path):
    from cleannet.trainer import load_tables

    data_dir = write_cleannet_data(tmp_path / "data", img_dim=IMG_DIM, num_classes=CLASSES, num_ref=NUM_REF)
    rows = np.column_stack([np.ones((7, IMG_DIM)), [0, 0, 0, 1, 1, 1, 2]]).astype(np.float32)
    save_npy(os.path.join(data_dir, "all.npy"), rows)
    with pytest.raises(InputError, match="class id 2 has 1 sample.*--class_score=references"):
        load_tables(config(data_dir, tmp_path, recipe="robust"))
    load_tables(config(data_dir, tmp_path))  # the paper's training does not need it


@pytest.fixture(scope="module")
def numpy_model():
    tf.keras.utils.set_random_seed(3)
    return NumpyCleanNet.from_keras(CleanNet(NUM_REF, IMG_DIM, "l2norm").build_variables())


def test_neighbour_votes_against_brute_force(numpy_model):
    rng = np.random.default_rng(1)
    bank_features = rng.random((40, IMG_DIM)).astype(np.float32)
    bank_ids = np.sort(rng.integers(0, 4, 40)).astype(np.int32)
    queries = np.concatenate([bank_features[:5], rng.random((5, IMG_DIM)).astype(np.float32)])
    reference = rng.random((4, NUM_REF, IMG_DIM)).astype(np.float32)
    scorer = ClassEmbeddingScorer(numpy_model, reference, bank=(bank_features, bank_ids))
    got = scorer.score_all_classes(queries, "neighbours", batch_size=3)
    embed = lambda x: numpy_model.encode_queries(x).astype(np.float64)
    q, b = embed(queries), embed(bank_features)
    cosines = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    for i in range(len(queries)):
        order = [j for j in np.argsort(-cosines[i], kind="stable") if not (i < 5 and j == i)]  # itself skipped
        expected = np.bincount(bank_ids[order[:NEIGHBOURS]], minlength=4) / NEIGHBOURS
        np.testing.assert_allclose(got[i], expected, atol=1e-6)
    scores = scorer.score_against_all(queries, np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1]), "neighbours")
    own = got[np.arange(10), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]]
    np.testing.assert_allclose(scores.own_score, own, atol=1e-6)


def test_neighbours_need_a_bank(numpy_model):
    scorer = ClassEmbeddingScorer(numpy_model, np.ones((2, NUM_REF, IMG_DIM), np.float32))
    with pytest.raises(ValueError, match="needs a bank"):
        scorer.score_all_classes(np.ones((1, IMG_DIM), np.float32), "neighbours")


@pytest.mark.parametrize("class_ids, vlabels, message", [
    ([0, 1, 0, 1], [1, 1, 1, 1], "no sample with vlabel 0 .*pass a verified split that holds correct and wrong"),
    ([0, 1, 0, 1], [0, 0, 0, 0], "no sample with vlabel 1"),
    ([2, 2, 2, 2], [0, 1, 0, 1], "class id 2 only.*two or more classes"),
    ([], [], "has no rows"),
])
def test_calibration_set_refusals(class_ids, vlabels, message):
    with pytest.raises(InputError, match=message) as raised:
        calibration.check_calibration_set(np.array(class_ids, np.int32), np.array(vlabels), "val.npy")
    assert "\n" not in str(raised.value) and "--decision=threshold" in str(raised.value)


def test_calibrate_mode_with_a_val_split_without_negatives_exits_2_and_writes_nothing(tmp_path):
    from cleannet import checkpoints

    data_dir = write_cleannet_data(tmp_path / "data", img_dim=IMG_DIM, num_classes=CLASSES, num_ref=NUM_REF)
    val = np.load(os.path.join(data_dir, "val.npy"))
    val[:, -1] = 1.0
    save_npy(os.path.join(data_dir, "val.npy"), val)
    tf.keras.utils.set_random_seed(0)
    model = CleanNet(NUM_REF, IMG_DIM, "log").build_variables()
    step = tf.Variable(1, dtype=tf.int64)
    tf.train.CheckpointManager(checkpoints.make_checkpoint(model, step), str(tmp_path / "ckpt"), 1).save(1)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "inference.py"), "--mode=calibrate",
                             "--data_dir=" + data_dir, "--checkpoint_dir=%s" % (tmp_path / "ckpt"),
                             "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF, "--batch_size=4"],
                            capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "val.npy" in last and "no sample with vlabel 0" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "ckpt" / calibration.CALIBRATION_FILE).exists()


def test_a_nan_margin_is_never_written(tmp_path):
    with pytest.raises(ValueError):
        calibration.calibrate(np.array([0.5, 0.2]), np.array([np.nan, 0.1]), np.array([1, 0]))
    with pytest.raises(ValueError, match="non-finite"):
        calibration.write_calibration(tmp_path, calibration.Calibration("neighbours", float("nan"), None, "c", 0, 1))
    assert not (tmp_path / calibration.CALIBRATION_FILE).exists()


@pytest.mark.slow
def test_relative_inference_takes_the_calibrations_class_score(tmp_path):
    """train.py --recipe=robust calibrates with neighbours; inference.py --decision=relative without
    --class_score then scores with it (margins are differences of vote shares, multiples of 1/k)."""
    from cleannet import checkpoints

    data_dir = write_cleannet_data(tmp_path / "data", img_dim=IMG_DIM, num_classes=CLASSES, num_ref=NUM_REF, n_val=12)
    tf.keras.utils.set_random_seed(0)
    model = CleanNet(NUM_REF, IMG_DIM, "l2norm").build_variables()
    step = tf.Variable(1, dtype=tf.int64)
    tf.train.CheckpointManager(checkpoints.make_checkpoint(model, step), str(tmp_path / "ckpt"), 1).save(1)
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    rng = np.random.default_rng(2)
    with open(tmp_path / "input.tsv", "w") as f:
        for i in range(9):
            f.write("k%d\t%s\t%s\n" % (i, "abc"[i % 3], ",".join("%.6g" % v for v in rng.random(IMG_DIM))))
    common = [sys.executable, os.path.join(ROOT, "inference.py"), "--data_dir=" + data_dir,
              "--checkpoint_dir=%s" % (tmp_path / "ckpt"), "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF,
              "--embed_norm=l2norm", "--batch_size=4", "--class_list=%s" % (tmp_path / "classes.txt")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    calibrated = subprocess.run(common + ["--mode=calibrate", "--class_score=neighbours"], capture_output=True,
                                text=True, env=env)
    assert calibrated.returncode == 0, calibrated.stderr
    out = tmp_path / "out.tsv"
    result = subprocess.run(common + ["--mode=inference", "--decision=relative", "--output_format=tsv",
                                      "--image_feature_list=%s" % (tmp_path / "input.tsv"), "--output_file=%s" % out],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    margins = np.array([float(r[7]) for r in rows])
    # all.npy has 15 rows: k = min(20, 15) votes, so every margin is a multiple of 1/15
    np.testing.assert_allclose(margins * 15, np.round(margins * 15), atol=1e-4)
