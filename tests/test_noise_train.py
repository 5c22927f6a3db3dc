"""Tests of the stage settings, objectives, stage files and stage runs of noise_model.

The expected values are written out here from the original's schedules (docs/noise_model.md,
section 3, and our digits schedule) or computed with NumPy, never taken from the code
under test.
"""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from noise_model.model import models
from noise_model.training import objectives
from noise_model.training import settings as settings_lib
from noise_model.training import stage_files
from noise_model.training import stage_runner
from noise_model.protocol import STAGE_NET
from noisylabels.console import is_noise
from noisylabels.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(ROOT, "noise_model", "train.py")


# ---------------------------------------------------------------------------------------
# The stage defaults table.

# The original's CIFAR-10 schedule: (base_lr, stepsize, max_iter) per stage.
CIFAR_SCHEDULES = {"clean": (0.001, 4000, 5000), "noisy_gt": (0.001, 4000, 6000),
                   "ntype": (0.0001, 1000, 1500), "joint": (0.001, 4000, 6000)}
# The original's Clothing1M schedule.
CLOTHING_SCHEDULES = {"clean": (0.001, 10000, 15000), "ntype": (0.001, 3000, 5000),
                      "joint": (0.001, 50000, 100000), "joint_stage2": (0.001, 50000, 160000)}


@pytest.mark.parametrize("stage", sorted(CIFAR_SCHEDULES))
def test_cifar10_defaults_are_the_originals(stage):
    s = settings_lib.default_settings("cifar10", stage)
    assert (s.base_lr, s.stepsize, s.max_iter) == CIFAR_SCHEDULES[stage]
    assert s.momentum == 0.9 and s.gamma == 0.1
    assert s.weight_decay == 0.004
    assert s.bias_lr_mult == 2 and s.bias_decay_mult == 1
    assert s.batch_size == 100 and s.test_batch_size == 100
    assert s.test_interval == 500


@pytest.mark.parametrize("stage", sorted(CLOTHING_SCHEDULES))
def test_clothing1m_defaults_are_the_originals(stage):
    s = settings_lib.default_settings("clothing1m", stage)
    assert (s.base_lr, s.stepsize, s.max_iter) == CLOTHING_SCHEDULES[stage]
    assert s.momentum == 0.9 and s.gamma == 0.1
    assert s.weight_decay == 0.0005
    assert s.bias_lr_mult == 2 and s.bias_decay_mult == 0
    assert s.batch_size == 128 and s.test_batch_size == 100


@pytest.mark.parametrize("dataset,stage,weights", [
    # (clean CE, noise-type CE, noisy-label loss, update_noise_lr)
    ("cifar10", "clean", (1, 0, 0, None)),
    ("cifar10", "noisy_gt", (1, 0, 0, None)),
    ("cifar10", "ntype", (0, 1, 0, None)),
    ("cifar10", "joint", (1, 1, 1, 1)),        # the original's joint step
    ("digits", "joint", (1, 1, 1, 1)),
    ("clothing1m", "joint", (0.1, 0, 1, 0)),   # the original's stage 1
    ("clothing1m", "joint_stage2", (1, 0.1, 1, 0.1)),  # stage 2
])
def test_default_loss_weights(dataset, stage, weights):
    s = settings_lib.default_settings(dataset, stage)
    assert (s.clean_loss_weight, s.ntype_loss_weight, s.noisy_loss_weight) == weights[:3]
    if weights[3] is not None:
        assert s.update_noise_lr == weights[3]


def test_digits_keeps_cifar_learning_rates():
    for stage, (lr, _, _) in CIFAR_SCHEDULES.items():
        s = settings_lib.default_settings("digits", stage)
        assert s.base_lr == lr
        assert 0 < s.stepsize <= s.max_iter


# Every documented default (docs/noise_model.md, section 3), per (dataset, stage), in the
# order of SETTING_NAMES: base_lr, stepsize, max_iter, gamma, momentum, weight_decay,
# bias_lr_mult, bias_decay_mult, batch_size, test_batch_size, test_interval,
# snapshot_interval, display, update_noise_lr, clean/ntype/noisy loss weights.
_CIFAR = (0.1, 0.9, 0.004, 2.0, 1.0, 100, 100, 500, 1000, 100)
_DIGITS = (0.1, 0.9, 0.004, 2.0, 1.0, 100, 100, 250, 500, 50)
_C1M = (0.1, 0.9, 0.0005, 2.0, 0.0, 128, 100, 1000, 5000, 20)
_CLEAN_NET, _NTYPE_NET, _BOTH = (1.0, 1.0, 0.0, 0.0), (1.0, 0.0, 1.0, 0.0), (1.0, 1.0, 1.0, 1.0)
DOCUMENTED = {
    ("cifar10", "clean"): (0.001, 4000, 5000) + _CIFAR + _CLEAN_NET,
    ("cifar10", "noisy_gt"): (0.001, 4000, 6000) + _CIFAR + _CLEAN_NET,
    ("cifar10", "ntype"): (0.0001, 1000, 1500) + _CIFAR + _NTYPE_NET,
    ("cifar10", "joint"): (0.001, 4000, 6000) + _CIFAR + _BOTH,
    ("digits", "clean"): (0.001, 500, 600) + _DIGITS + _CLEAN_NET,
    ("digits", "noisy_gt"): (0.001, 600, 900) + _DIGITS + _CLEAN_NET,
    ("digits", "ntype"): (0.0001, 300, 450) + _DIGITS + _NTYPE_NET,
    ("digits", "joint"): (0.001, 600, 900) + _DIGITS + _BOTH,
    ("clothing1m", "clean"): (0.001, 10000, 15000) + _C1M + _CLEAN_NET,
    ("clothing1m", "ntype"): (0.001, 3000, 5000) + _C1M + _NTYPE_NET,
    ("clothing1m", "joint"): (0.001, 50000, 100000) + _C1M + (0.0, 0.1, 0.0, 1.0),
    ("clothing1m", "joint_stage2"): (0.001, 50000, 160000) + _C1M + (0.1, 1.0, 0.1, 1.0),
}


@pytest.mark.parametrize("dataset,stage", sorted(DOCUMENTED))
def test_each_factory_gives_the_documented_values(dataset, stage):
    settings = settings_lib.FACTORIES[(dataset, stage)]()
    assert settings == settings_lib.default_settings(dataset, stage)
    values = tuple(getattr(settings, name) for name in settings_lib.SETTING_NAMES)
    assert values == DOCUMENTED[(dataset, stage)]
    for name in settings_lib.SETTING_NAMES:  # integer counts, float rates
        expected_type = int if name in ("stepsize", "max_iter", "batch_size", "test_batch_size", "test_interval",
                                        "snapshot_interval", "display") else float
        assert type(getattr(settings, name)) is expected_type, name
    assert set(settings_lib.FACTORIES) == set(DOCUMENTED)


def test_stage_all_overrides_reach_loss_weights_of_joint_stages_only():
    overrides = {"base_lr": 0.01, "clean_loss_weight": 0.5, "update_noise_lr": None}
    assert settings_lib.stage_overrides("clean", overrides) == {"base_lr": 0.01}
    assert settings_lib.stage_overrides("joint_stage2", overrides) == overrides
    configs = stage_runner.stage_configs("clothing1m", "data", "run", overrides)
    assert [c.stage for c in configs] == ["clean", "ntype", "joint", "joint_stage2"]
    assert [c.settings.clean_loss_weight for c in configs] == [1.0, 0.0, 0.5, 0.5]
    assert all(c.settings.base_lr == 0.01 for c in configs)
    assert configs[3].init_dir == os.path.join("run", "joint") and configs[1].caffemodel_weights is None


def test_resolve_settings_overrides_and_validation():
    s = settings_lib.resolve_settings("cifar10", "clean", {"base_lr": 0.01, "max_iter": None,
                                                     "batch_size": 7})
    assert s.base_lr == 0.01 and s.max_iter == 5000 and s.batch_size == 7
    assert type(s.batch_size) is int and type(s.base_lr) is float
    bad = [("cifar10", "clean", {"base_lr": -1.0}),
           ("cifar10", "clean", {"batch_size": 0}),
           ("cifar10", "clean", {"momentum": 1.0}),
           ("cifar10", "clean", {"max_iter": -5}),
           ("cifar10", "clean", {"ntype_loss_weight": 1.0}),  # clean trains no ntype net
           ("cifar10", "ntype", {"noisy_loss_weight": 1.0}),
           ("cifar10", "joint", {"clean_loss_weight": 0.0, "ntype_loss_weight": 0.0,
                                 "noisy_loss_weight": 0.0}),
           ("cifar10", "joint_stage2", {}),  # a Clothing1M stage only
           ("clothing1m", "noisy_gt", {}),
           ("mnist", "clean", {})]
    for dataset, stage, overrides in bad:
        with pytest.raises(InputError):
            settings_lib.resolve_settings(dataset, stage, overrides)


# ---------------------------------------------------------------------------------------
# Loss weighting per stage.


def _np_log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def _np_masked_ce(labels, logits):
    logp = _np_log_softmax(logits.astype(np.float64))
    return sum(-logp[i, y] for i, y in enumerate(labels) if y >= 0) / len(labels)


def _np_noisy_label_loss(clean_logits, ntype_logits, noisy, matrix_c):
    """The noisy-label loss (docs/noise_model.md), sample by sample."""
    m, num_classes = clean_logits.shape
    p_y = np.exp(_np_log_softmax(clean_logits.astype(np.float64)))
    p_z = np.exp(_np_log_softmax(ntype_logits.astype(np.float64)))
    total = 0.0
    for i in range(m):
        if noisy[i] < 0:
            continue
        lik = np.zeros((num_classes, 3))
        for y in range(num_classes):
            lik[y, 0] = 1.0 if y == noisy[i] else 0.0
            lik[y, 1] = 0.0 if y == noisy[i] else 1.0 / (num_classes - 1)
            lik[y, 2] = matrix_c[noisy[i], y]
        joint = p_y[i][:, None] * p_z[i][None, :] * lik
        s = joint.sum()
        q = joint / s
        total += -np.sum(q[q > 0] * np.log(q[q > 0])) - np.log(s)
    return total / m


def _batch():
    rng = np.random.default_rng(3)
    clean_logits = rng.normal(size=(6, 4)).astype(np.float32)
    ntype_logits = rng.normal(size=(6, 3)).astype(np.float32)
    # columns: clean label, noisy label, noise type (−1 = unknown), as in the mixed set.
    labels = np.array([[2, -1, 0], [-1, 1, -1], [0, -1, 2], [-1, 3, -1], [1, -1, 1],
                       [-1, 0, -1]], np.int64)
    matrix_c = np.array([[0, .5, .2, 0], [.6, 0, .8, .3], [.4, .5, 0, .7], [0, 0, 0, 0]],
                        np.float32)
    return clean_logits, ntype_logits, labels, matrix_c


def test_stage_loss_terms_and_weights():
    from noise_model.model.layers import NoisyLabelLoss

    clean_logits, ntype_logits, labels, matrix_c = _batch()
    ce_clean = _np_masked_ce(labels[:, 0], clean_logits)
    # noisy_gt: the clean label where there is one, else the noisy label.
    ce_noisy_gt = _np_masked_ce(np.array([2, 1, 0, 3, 1, 0]), clean_logits)
    ce_ntype = _np_masked_ce(labels[:, 2], ntype_logits)
    nll = _np_noisy_label_loss(clean_logits, ntype_logits, labels[:, 1], matrix_c)
    loss_layer = NoisyLabelLoss(matrix_c)

    cases = [("cifar10", "clean", clean_logits, None, ce_clean),
             ("cifar10", "noisy_gt", clean_logits, None, ce_noisy_gt),
             ("cifar10", "ntype", None, ntype_logits, ce_ntype),
             ("cifar10", "joint", clean_logits, ntype_logits, ce_clean + ce_ntype + nll),
             ("clothing1m", "joint", clean_logits, ntype_logits, 0.1 * ce_clean + nll),
             ("clothing1m", "joint_stage2", clean_logits, ntype_logits,
              ce_clean + 0.1 * ce_ntype + nll)]
    for dataset, stage, cl, nl, expected in cases:
        settings = settings_lib.default_settings(dataset, stage)
        terms = objectives.loss_terms(stage, cl, nl, labels, loss_layer)
        total = float(objectives.weighted_loss(terms, settings))
        np.testing.assert_allclose(total, expected, rtol=1e-5, err_msg=stage)
    joint_terms = objectives.loss_terms("joint", clean_logits, ntype_logits, labels, loss_layer)
    assert set(joint_terms) == {"clean_loss", "ntype_loss", "noisy_label_loss"}
    np.testing.assert_allclose(float(joint_terms["noisy_label_loss"]), nll, rtol=1e-5)
    # An overridden weight is used as given.
    settings = settings_lib.resolve_settings("cifar10", "joint", {"noisy_loss_weight": 2.5})
    np.testing.assert_allclose(float(objectives.weighted_loss(joint_terms, settings)),
                               ce_clean + ce_ntype + 2.5 * nll, rtol=1e-5)


def test_test_splits_per_stage():
    assert objectives.test_splits("cifar10", "joint") == [("test", "test", 0)]
    assert objectives.test_splits("cifar10", "ntype") == [("test", "ntype_test", 2)]
    assert objectives.test_splits("clothing1m", "clean") == [("val", "clean_val", 0),
                                                        ("test", "test", 0)]


def test_training_order_is_a_pure_function_of_seed_and_position():
    from noise_model.data import datasets

    def take(seed, start, count):
        pairs = [(int(i), int(p)) for _, (i, p) in
                 zip(range(count), datasets.training_order(7, seed, start))]
        return [i for i, _ in pairs], [p for _, p in pairs]

    order, positions = take(3, 0, 21)
    assert positions == list(range(21))
    for epoch in range(3):  # every epoch is a permutation of the 7 rows
        assert sorted(order[7 * epoch:7 * epoch + 7]) == list(range(7))
    assert order[:7] != order[7:14]  # a new order each epoch
    # Starting at any position gives the tail of the same stream.
    for start in (1, 6, 7, 12):
        assert take(3, start, 21 - start) == (order[start:], positions[start:])
    assert take(4, 0, 21)[0] != order


# ---------------------------------------------------------------------------------------
# Weight copying between stages.


def _save_stage(train_dir, dataset, stage, model, num_classes, image_size):
    """Writes a finished-looking stage directory holding `model` (as train.py does)."""
    stage_files.write_stage_info(train_dir, {"dataset": dataset, "stage": stage,
                                        "net": STAGE_NET[stage],
                                        "num_classes": num_classes, "image_size": image_size})
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), train_dir, 2,
                                         checkpoint_name=stage_files.CHECKPOINT_PREFIX)
    path = manager.save(checkpoint_number=10)
    stage_files.write_final(train_dir, path, 10, {"test/accuracy": 0.5})
    return {layer.name: [w.numpy().copy() for w in layer.weights] for layer in model.layers}


def _weights(model):
    return {layer.name: [w.numpy().copy() for w in layer.weights] for layer in model.layers
            if layer.weights}


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_cifar_stage_initialisation_copies_the_right_layers(tmp_path):
    tf.random.set_seed(1)
    clean_dir, ntype_dir = str(tmp_path / "clean"), str(tmp_path / "ntype")
    clean_saved = _save_stage(clean_dir, "cifar10", "clean",
                              models.build_stage_net("cifar10", "clean", 10, 32), 10, 32)
    ntype_saved = _save_stage(ntype_dir, "cifar10", "ntype",
                              models.build_stage_net("cifar10", "ntype", 10, 32), 10, 32)

    # ntype from clean: the conv layers only (the original's CIFAR-10 step 3).
    ntype = models.build_stage_net("cifar10", "ntype", 10, 32)
    fresh = _weights(ntype)
    copied = stage_files.initialize_stage("ntype", "cifar10", ntype, 10, 32,
                                     clean_model_dir=clean_dir, log=lambda msg: None)
    assert copied["clean"] == ["conv1", "conv2", "conv3"]
    now = _weights(ntype)
    for name in ("conv1", "conv2", "conv3"):
        assert _same(now[name], clean_saved[name])
    for name in ("ip1", "ip2"):
        assert _same(now[name], fresh[name]) and not _same(now[name], clean_saved[name][:1])

    # noisy_gt from clean: every layer.
    baseline = models.build_stage_net("cifar10", "clean", 10, 32)
    stage_files.initialize_stage("noisy_gt", "cifar10", baseline, 10, 32,
                            clean_model_dir=clean_dir, log=lambda msg: None)
    for name, values in _weights(baseline).items():
        assert _same(values, clean_saved[name])

    # joint: clean branch from clean, noise-type branch from ntype, every layer.
    joint = models.build_stage_net("cifar10", "joint", 10, 32)
    copied = stage_files.initialize_stage("joint", "cifar10", joint, 10, 32, clean_model_dir=clean_dir,
                                     ntype_model_dir=ntype_dir, log=lambda msg: None)
    assert copied == {"clean": ["conv1", "conv2", "conv3", "ip1", "ip2"],
                      "ntype": ["conv1", "conv2", "conv3", "ip1", "ip2"]}
    for name, values in _weights(joint.clean_net).items():
        assert _same(values, clean_saved[name])
    for name, values in _weights(joint.ntype_net).items():
        assert _same(values, ntype_saved[name])
        assert not _same(values, clean_saved[name])

    # A joint run's directory serves as a clean-model source too (its clean branch).
    _save_stage(str(tmp_path / "joint"), "cifar10", "joint", joint, 10, 32)
    net, _, finished = stage_files.load_stage_net(str(tmp_path / "joint"), "clean", "cifar10", 10,
                                             32, "clean_model_dir")
    assert finished
    for name, values in _weights(net).items():
        assert _same(values, clean_saved[name])


def test_stage_initialisation_errors(tmp_path):
    clean_dir = str(tmp_path / "clean")
    _save_stage(clean_dir, "cifar10", "clean", models.build_stage_net("cifar10", "clean", 10, 32), 10, 32)
    net = models.build_stage_net("cifar10", "clean", 10, 32)
    noop = lambda msg: None  # noqa: E731
    with pytest.raises(InputError, match="clean_model_dir"):
        stage_files.initialize_stage("noisy_gt", "cifar10", net, 10, 32, log=noop)
    with pytest.raises(InputError, match="no checkpoint|no stage run"):
        stage_files.initialize_stage("noisy_gt", "cifar10", net, 10, 32,
                                clean_model_dir=str(tmp_path / "empty"), log=noop)
    with pytest.raises(InputError, match="digits"):  # a cifar10 run given to digits
        stage_files.initialize_stage("noisy_gt", "digits", net, 10, 32, clean_model_dir=clean_dir,
                                log=noop)
    joint = models.build_stage_net("cifar10", "joint", 10, 32)
    with pytest.raises(InputError, match="expected a ntype net"):
        stage_files.initialize_stage("joint", "cifar10", joint, 10, 32, clean_model_dir=clean_dir,
                                ntype_model_dir=clean_dir, log=noop)


def test_clothing1m_ntype_starts_from_every_matching_clean_layer(tmp_path):
    clean_dir = str(tmp_path / "clean")
    clean_saved = _save_stage(clean_dir, "clothing1m", "clean",
                              models.build_stage_net("clothing1m", "clean", 14, 227), 14, 227)
    ntype = models.build_ntype_model("clothing1m")
    fresh = _weights(ntype)
    copied = stage_files.initialize_stage("ntype", "clothing1m", ntype, 14, 227,
                                     clean_model_dir=clean_dir, log=lambda msg: None)
    # "from 1": the convs and fc6 match CaffeNet by name and shape; the new head does not.
    assert copied["clean"] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6"]
    now = _weights(ntype)
    for name in copied["clean"]:
        assert _same(now[name], clean_saved[name])
    for name in ("fc7_ntype", "fc8_ntype"):
        assert _same(now[name], fresh[name])


def test_pretrained_weights_file_is_loaded_by_name_and_shape(tmp_path):
    source = models.build_clean_model("cifar10", 7)  # a different number of outputs
    path = str(tmp_path / "pre.weights.h5")
    source.save_weights(path)
    target = models.build_clean_model("cifar10", 10)
    fresh = _weights(target)
    loaded = stage_files.load_pretrained_weights(target, path)
    assert loaded == ["conv1", "conv2", "conv3", "ip1"]
    now = _weights(target)
    for name in loaded:
        assert _same(now[name], [w.numpy() for w in source.get_layer(name).weights])
    assert _same(now["ip2"], fresh["ip2"])
    with pytest.raises(InputError):
        stage_files.load_pretrained_weights(target, str(tmp_path / "missing.weights.h5"))


# ---------------------------------------------------------------------------------------
# Training runs on the digits data (a few iterations).



def _config(data_dir, train_dir, stage="clean", **overrides):
    base = {"max_iter": 3, "batch_size": 16, "test_batch_size": 200, "test_interval": 2,
            "snapshot_interval": 2, "display": 1}
    base.update(overrides)
    settings = settings_lib.resolve_settings("digits", stage, base)
    return stage_runner.StageConfig(dataset="digits", stage=stage, data_dir=data_dir,
                                    train_dir=train_dir, settings=settings, seed=0)


def test_resume_continues_at_saved_iteration_with_saved_momentum(digits_dir, tmp_path):
    train_dir = str(tmp_path / "clean")
    metrics = stage_runner.run_stage(_config(digits_dir, train_dir, base_lr=0.01))
    assert set(metrics) == {"test/accuracy", "test/loss"}
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    assert tf.train.latest_checkpoint(train_dir).endswith("ckpt-3")
    final = stage_files.read_final(train_dir)
    assert final["iteration"] == 3 and final["checkpoint"] == "ckpt-3"
    saved = tf.train.load_checkpoint(os.path.join(train_dir, "ckpt-3"))
    names = [n for n, _ in tf.train.list_variables(os.path.join(train_dir, "ckpt-3"))]
    assert saved.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 3
    assert saved.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 3
    kernel_key = [n for n in names if n.startswith("model/ip2/") and "kernel" in n][0]
    slot_keys = [n for n in names if n.startswith("optimizer/_variables/")]
    w3 = saved.get_tensor(kernel_key)
    slot_values = [saved.get_tensor(k) for k in slot_keys]
    v3 = [v for v in slot_values if v.shape == w3.shape]
    assert len(v3) == 1 and np.abs(v3[0]).max() > 0

    # Continue to iteration 4 with a negligible lr: Caffe's update is then
    # V4 = momentum · V3, W4 = W3 − V4, which holds only if weights and slots were restored.
    stage_runner.run_stage(_config(digits_dir, train_dir, base_lr=1e-30, max_iter=4))
    resumed = tf.train.load_checkpoint(os.path.join(train_dir, "ckpt-4"))
    assert resumed.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 4
    assert resumed.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 4
    np.testing.assert_allclose(resumed.get_tensor(kernel_key), w3 - 0.9 * v3[0],
                               rtol=1e-6, atol=1e-9)
    assert stage_files.read_final(train_dir)["iteration"] == 4

    # A finished stage run again returns its stored metrics without training.
    again = stage_runner.run_stage(_config(digits_dir, train_dir, base_lr=1e-30, max_iter=4))
    assert again == stage_files.read_final(train_dir)["metrics"]

    # The directory now belongs to stage clean: another stage may not reuse it.
    with pytest.raises(InputError, match="train_dir"):
        stage_runner.run_stage(_config(digits_dir, train_dir, stage="ntype"))


def _event_steps(train_dir, tag):
    steps = []
    for path in sorted(glob.glob(os.path.join(train_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return sorted(steps)


def test_caffe_order_of_tests_displays_and_snapshots(digits_dir, tmp_path):
    """Caffe with test_interval 2, display 3, snapshot 2, max_iter 7: tests at iterations
    0, 2, 4, 6 and 7; displays after iterations 0, 3, 6 (0-based, the last one too);
    snapshots at 2, 4, 6 and 7 (the 5 newest kept)."""
    train_dir = str(tmp_path / "clean")
    stage_runner.run_stage(_config(digits_dir, train_dir, max_iter=7, display=3))
    assert _event_steps(train_dir, "test/accuracy") == [0, 2, 4, 6, 7]
    assert _event_steps(train_dir, "train/loss") == [0, 3, 6]
    assert _event_steps(train_dir, "train/lr") == [0, 3, 6]
    state = tf.train.get_checkpoint_state(train_dir)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-2", "ckpt-4", "ckpt-6",
                                                                               "ckpt-7"]
    # Run again with a later max_iter: resumed at 7, tested again only at 8 (the end).
    stage_runner.run_stage(_config(digits_dir, train_dir, max_iter=8, display=3))
    assert _event_steps(train_dir, "test/accuracy") == [0, 2, 4, 6, 7, 8]
    assert _event_steps(train_dir, "train/loss") == [0, 3, 6, 7]


def test_non_finite_loss_stops_with_one_line(digits_dir, tmp_path):
    train_dir = str(tmp_path / "clean")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the console is quiet anyway
    result = subprocess.run(
        [sys.executable, TRAIN_SCRIPT, "--dataset=digits", "--stage=clean",
         "--data_dir=" + digits_dir, "--train_dir=" + train_dir, "--base_lr=1e30",
         "--max_iter=20", "--snapshot_interval=1", "--test_interval=100", "--batch_size=16"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(error_lines) == 1
    line = error_lines[0]
    assert "non-finite" in line and "at iteration" in line and "last good checkpoint" in line
    # TensorFlow's start-up notices are filtered (a checkpoint save's "Sharding callback" INFO line is
    # logged later, outside the start-up window, and is not checked here).
    assert not [l for l in result.stderr.splitlines() if is_noise(l) and "Sharding callback" not in l], \
        result.stderr
    # Every checkpoint that was written holds finite weights.
    latest = tf.train.latest_checkpoint(train_dir)
    if latest is not None:
        reader = tf.train.load_checkpoint(latest)
        for name, _ in tf.train.list_variables(latest):
            if name.startswith("model/"):
                assert np.all(np.isfinite(reader.get_tensor(name))), name
        assert latest in line or os.path.basename(latest) in line
    assert stage_files.read_final(train_dir) is None


BAD_FLAGS = [
    ("dataset_unknown", ["--dataset=mnist", "--stage=clean"], ["--dataset=mnist", "value should be one of"]),
    ("base_lr_negative", ["--dataset=cifar10", "--stage=clean", "--base_lr=-1"],
     ["--base_lr=-1", "greater than 0"]),
    ("num_cpu_replicas_negative", ["--dataset=digits", "--stage=clean", "--num_cpu_replicas=-1"],
     ["--num_cpu_replicas=-1", "not a non-negative integer"]),
    ("stage_not_in_protocol", ["--dataset=cifar10", "--stage=joint_stage2", "--init_dir={tmp}"],
     ["stage=joint_stage2", "--stage is not part of --dataset's protocol"]),
    ("joint_stage2_without_init_dir", ["--dataset=clothing1m", "--stage=joint_stage2"],
     ["init_dir=None", "--stage=joint_stage2 continues joint stage 1: give its train_dir as --init_dir"]),
    ("missing_data_dir", ["--dataset=cifar10", "--stage=clean", "--data_dir={tmp}/none"],
     ["{tmp}/none", "--data_dir", "not a directory"]),
    ("missing_init_dir", ["--dataset=clothing1m", "--stage=joint_stage2", "--init_dir={tmp}/none"],
     ["{tmp}/none", "--init_dir", "not a directory"]),
]


@pytest.mark.parametrize("extra, expected", [case[1:] for case in BAD_FLAGS], ids=[case[0] for case in BAD_FLAGS])
def test_cli_rejects_bad_flags_with_one_line(tmp_path, extra, expected):
    """Flag and directory errors: one stderr line naming the flag (and value), exit status
    2, before TensorFlow loads (nothing else on stderr, no train_dir)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    extra = [arg.format(tmp=tmp_path) for arg in extra]
    data_dir = [] if any(arg.startswith("--data_dir") for arg in extra) else ["--data_dir=" + str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "noise_model.train", "--train_dir=" + str(tmp_path / "t")] + data_dir + extra,
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 2, (extra, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert all(part.format(tmp=tmp_path) in lines[0] for part in expected), lines[0]
    assert not (tmp_path / "t").exists()
