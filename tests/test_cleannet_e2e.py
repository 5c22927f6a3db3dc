"""CleanNet end to end through the command-line tools, on small generated data.

convert_data → find_reference → train.py → resume → inference.py, checking validation
accuracy against the majority-class rate, the resumed step, one output line per input
line, and the TensorBoard tags.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMG_DIM, NUM_CLASSES, NUM_REF = 16, 4, 4
TRAIN_TAGS = {"train/accuracy", "train/objective_loss", "train/regularization_loss", "train/loss", "train/lr"}
VAL_TAGS = {"val/loss", "val/acc", "val/pr_label_noise", "val/similarity_correct_label",
            "val/similarity_wrong_label", "val/per_class_accuracy"}


def run(args, expect_ok=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True, env=env)
    if expect_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def make_samples(rng, n, noise_rate):
    """Non-negative features; class c is a mixture of 3 sub-clusters of its own; a share
    `noise_rate` of the labels name a wrong class.

    With 3 sub-clusters per class and few wrong labels, k-means references of a class fall
    on its own sub-clusters (as they do on real data, where correct samples dominate).
    """
    centres = np.eye(3 * NUM_CLASSES, IMG_DIM) * 4.0 + 0.5
    true = rng.integers(0, NUM_CLASSES, n)
    features = np.abs(centres[3 * true + rng.integers(0, 3, n)] + rng.normal(0, 0.3, (n, IMG_DIM)))
    wrong = rng.random(n) < noise_rate
    labels = np.where(wrong, (true + rng.integers(1, NUM_CLASSES, n)) % NUM_CLASSES, true)
    return features, labels, (labels == true).astype(int)


def write_verified(path, features, labels, vlabels, with_url):
    with open(path, "w") as f:
        for i, (x, c, v) in enumerate(zip(features, labels, vlabels)):
            url = "\thttp://x/%d.jpg" % i if with_url else ""
            f.write("k%d%s\tclass%d\t%d\t%s\n" % (i, url, c, v, ",".join("%.5f" % t for t in x)))


def write_all(path, features, labels):
    with open(path, "w") as f:
        for i, (x, c) in enumerate(zip(features, labels)):
            f.write("a%d\tclass%d\t%s\n" % (i, c, ",".join("%.5f" % t for t in x)))


def event_tags(directory):
    tags = set()
    for name in os.listdir(directory):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cleannet_e2e")
    rng = np.random.default_rng(0)
    tsv = root / "tsv"
    tsv.mkdir()
    (tsv / "classes.txt").write_text("".join("class%d\n" % c for c in range(NUM_CLASSES)))
    write_verified(tsv / "train.tsv", *make_samples(rng, 400, 0.3), with_url=False)
    val = make_samples(rng, 200, 0.3)
    write_verified(tsv / "val.tsv", *val, with_url=True)
    all_features, all_labels, _ = make_samples(rng, 600, 0.15)
    write_all(tsv / "all.tsv", all_features, all_labels)
    data = root / "data"
    for split in ("train", "val", "all"):
        run(["util/convert_data.py", "--split=" + split, "--class_list=%s" % (tsv / "classes.txt"),
             "--data_path=%s" % (tsv / (split + ".tsv")), "--output_dir=%s" % data])
    run(["util/find_reference.py", "--class_list=%s" % (tsv / "classes.txt"), "--input_npy=%s" % (data / "all.npy"),
         "--output_dir=%s" % data, "--num_ref=%d" % NUM_REF, "--img_dim=%d" % IMG_DIM, "--num_workers=1"])
    return {"root": root, "tsv": tsv, "data": data, "val_vlabels": val[2]}


def train_args(ws, n_step):
    model = ws["root"] / "model"
    return ["train.py", "--data_dir=%s" % ws["data"], "--checkpoint_dir=%s" % (model / "checkpoints"),
            "--log_dir=%s" % (model / "log"), "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF,
            "--n_step=%d" % n_step, "--val_interval=100", "--log_interval=50", "--val_batch_size=32",
            "--lr_update=1000", "--class_list=%s" % (ws["tsv"] / "classes.txt")]


def test_train_resume_and_infer(workspace):
    ws = workspace
    model = ws["root"] / "model"
    first = run(train_args(ws, 300))
    assert "Training from scratch" in first.stderr
    ckpt_dir = model / "checkpoints"
    assert tf.train.latest_checkpoint(str(ckpt_dir)).endswith("ckpt-300")
    assert tf.train.latest_checkpoint(str(ckpt_dir / "best")) is not None

    # Validation accuracy clearly above the majority-class rate.
    val_accs = []
    for event in tf.compat.v1.train.summary_iterator(
            os.path.join(model / "log" / "val", os.listdir(model / "log" / "val")[0])):
        for value in event.summary.value:
            if value.tag == "val/acc":
                val_accs.append(float(tf.make_ndarray(value.tensor)))
    majority = max(np.mean(ws["val_vlabels"]), 1 - np.mean(ws["val_vlabels"]))
    assert max(val_accs) > majority + 0.15, (val_accs, majority)

    # Resume continues from the saved step.
    second = run(train_args(ws, 400))
    assert "Recovered the model at global step = 300" in second.stderr
    assert tf.train.latest_checkpoint(str(ckpt_dir)).endswith("ckpt-400")

    assert TRAIN_TAGS <= event_tags(model / "log" / "train")
    assert VAL_TAGS <= event_tags(model / "log" / "val")

    # Inference: one line per input line, in order, with num_samples=-1 meaning all and a
    # last partial batch (600 = 9 × 64 + 24).
    out = ws["root"] / "pred.txt"
    run(["inference.py", "--data_dir=%s" % ws["data"], "--class_list=%s" % (ws["tsv"] / "classes.txt"),
         "--image_feature_list=%s" % (ws["tsv"] / "all.tsv"), "--checkpoint_dir=%s" % ckpt_dir,
         "--output_file=%s" % out, "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF, "--mode=inference"])
    sims = np.loadtxt(out)
    assert sims.shape == (600,)
    assert np.all(np.abs(sims) <= 1.0 + 1e-6)

    # val mode scores every row (200 = 3 × 64 + 8) and reports the accuracy over all of them.
    out_val = ws["root"] / "val_pred.txt"
    result = run(["inference.py", "--data_dir=%s" % ws["data"], "--class_list=%s" % (ws["tsv"] / "classes.txt"),
                  "--checkpoint_dir=%s" % ckpt_dir, "--output_file=%s" % out_val, "--img_dim=%d" % IMG_DIM,
                  "--num_ref=%d" % NUM_REF, "--mode=val", "--batch_size=64"])
    val_sims = np.loadtxt(out_val)
    assert val_sims.shape == (200,)
    labels = ws["val_vlabels"]
    assert len(labels) == 200
    expected_acc = np.mean((val_sims >= 0.1) == (labels == 1))
    reported = float(result.stdout.strip().split("=")[-1])
    assert reported == pytest.approx(expected_acc, abs=1e-6)


def test_inference_without_checkpoint_fails_clearly(workspace, tmp_path):
    ws = workspace
    out = tmp_path / "pred.txt"
    result = run(["inference.py", "--data_dir=%s" % ws["data"], "--class_list=%s" % (ws["tsv"] / "classes.txt"),
                  "--image_feature_list=%s" % (ws["tsv"] / "all.tsv"), "--checkpoint_dir=%s" % (tmp_path / "none"),
                  "--output_file=%s" % out, "--img_dim=%d" % IMG_DIM, "--num_ref=%d" % NUM_REF], expect_ok=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error:")
    assert "checkpoint" in result.stderr
    assert not out.exists()
