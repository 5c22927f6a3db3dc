"""cleannet.find_label_issues and cleannet.CleanNet: bad input refused before training, the
same run and results as the command-line pipeline, load / score / resume rules."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import cleannet
from cleannet import api_inputs
from cleannet.api import result_table
from noisylabels.errors import InputError
from process_control import ENV, ROOT

IMG_DIM, NUM_CLASSES, PER_CLASS = 8, 3, 40
SETTINGS = dict(num_ref=4, n_step=30, batch_size_sup=8, batch_size_unsup=8, val_batch_size=4, embed_norm="log")


def noisy_data(seed=0):
    """Three Gaussian classes of non-negative 8-d features, 25% of labels flipped; labels of
    classes 0 and 1 verified for every other sample, class 2 never. Returns
    (features float32 [120, 8], noisy labels [120], verified [120], label correct [120])."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(NUM_CLASSES), PER_CLASS)
    centres = rng.random((NUM_CLASSES, IMG_DIM)) * 4
    features = np.abs(centres[true] + rng.normal(0, 0.6, (len(true), IMG_DIM))).astype(np.float32)
    labels = np.where(rng.random(len(true)) < 0.25, (true + rng.integers(1, NUM_CLASSES, len(true))) % NUM_CLASSES,
                      true)
    verified = np.where((labels < 2) & (np.arange(len(true)) % 2 == 0), (labels == true).astype(int), -1)
    return features, labels, verified, labels == true


def _no_files(directory):
    return [] if not os.path.exists(directory) else sorted(os.listdir(directory))


@pytest.mark.parametrize("change, field, message", [
    (lambda f, l, v: (f[:, :, None], l, v), "features", "has shape (120, 8, 1), expected [N, D]"),
    (lambda f, l, v: (np.where(np.arange(f.size).reshape(f.shape) == 17, np.nan, f), l, v), "features",
     "row 2, column 1 is nan"),
    (lambda f, l, v: (f.astype(np.float64) * np.where(np.arange(f.size).reshape(f.shape) == 9, 1e300, 1), l, v),
     "features", "row 1, column 1 is inf"),
    (lambda f, l, v: (f, np.where(np.arange(len(l)) == 5, -1, l), v), "labels", "label -1 at index 5 is outside"),
    (lambda f, l, v: (f, l[:-1], v), "labels", "has shape (119,), expected [120]"),
    (lambda f, l, v: (f, l, np.where(np.arange(len(v)) == 3, 2, v)), "verified", "index 3 has 2; expected 1"),
    (lambda f, l, v: (f, l, np.where(np.arange(len(v)) == 3, np.nan, v)), "verified", "index 3 has nan"),
    (lambda f, l, v: (f, l, np.full(len(v), -1)), "verified", "has 0 verified samples"),
    (lambda f, l, v: (-f, l, v), "feature", "negative feature"),
], ids=["shape", "nan", "float32_overflow", "label_outside", "label_count", "flag_value", "flag_nan",
        "no_verified", "negative_for_log"])
def test_bad_input_is_one_line_before_anything_is_written(tmp_path, change, field, message):
    features, labels, verified, _ = noisy_data()
    features, labels, verified = change(features, labels, verified)
    work_dir = str(tmp_path / "run")
    with pytest.raises(InputError) as err:
        cleannet.find_label_issues(features, labels, verified=verified, work_dir=work_dir, **SETTINGS)
    assert "%s: " % field in str(err.value) and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    assert _no_files(work_dir) == []


def test_too_few_samples_for_the_references_is_refused_before_training(tmp_path):
    features, labels, verified, _ = noisy_data()
    settings = dict(SETTINGS, num_ref=60)
    with pytest.raises(InputError, match="class '0' .id 0. has [0-9]+ samples, fewer than --num_ref=60"):
        cleannet.find_label_issues(features, labels, verified=verified, work_dir=str(tmp_path / "run"), **settings)
    assert _no_files(str(tmp_path / "run")) == []


def test_labels_by_name_and_pandas_inputs():
    features, labels, verified, _ = noisy_data()
    names = ["cat", "dog", "emu"]
    ids, got = api_inputs.check_labels(pd.Series(pd.Categorical.from_codes(labels, names)), len(labels), None)
    assert got == names and np.array_equal(ids, labels)
    ids, got = api_inputs.check_labels(np.array(names)[labels], len(labels), names[::-1])
    assert got == names[::-1] and np.array_equal(ids, 2 - labels)
    with pytest.raises(InputError, match="labels: label 'fox' at index 0 is not one of the classes"):
        api_inputs.check_labels(np.array(["fox"] + ["cat"] * (len(labels) - 1)), len(labels), names)
    frame = pd.DataFrame(features, index=np.arange(len(features)) * 10)
    np.testing.assert_array_equal(api_inputs.check_features(frame), features)


def test_the_split_keeps_a_fifth_of_the_verified_samples_for_validation():
    verified = np.array([-1, 1, 0, 1, 1, -1, 0, 1, 1, 1, 0, -1])
    train, val = api_inputs.split_verified(verified, seed=3)
    assert len(val) == 2 and len(train) == 7  # round(0.2 * 9) = 2
    assert sorted(np.concatenate([train, val]).tolist()) == np.flatnonzero(verified >= 0).tolist()
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    np.testing.assert_array_equal(api_inputs.split_verified(verified, seed=3)[1], val)


def _run(script, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, env=ENV,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _write_tsvs(directory, features, labels, verified, seed, num_classes):
    """The command-line pipeline's inputs for the same data and split as the API's."""
    names = [str(c) for c in range(num_classes)]
    train, val = api_inputs.split_verified(verified, seed)
    pool = np.setdiff1d(np.arange(len(features)), val)
    text = lambda i: ",".join(repr(float(v)) for v in np.asarray(features[i], np.float32))
    files = {"classes.txt": "".join(n + "\n" for n in names),
             "train.tsv": "".join("k%d\t%s\t%d\t%s\n" % (i, labels[i], verified[i], text(i)) for i in train),
             "val.tsv": "".join("k%d\t%s\t%d\t%s\n" % (i, labels[i], verified[i], text(i)) for i in val),
             "all.tsv": "".join("k%d\t%s\t%s\n" % (i, labels[i], text(i)) for i in pool),
             "every.tsv": "".join("k%d\t%s\t%s\n" % (i, labels[i], text(i)) for i in range(len(features)))}
    os.makedirs(directory)
    for name, content in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(content)
    return {name: os.path.join(directory, name) for name in files}


def _compare_with_the_command_line(tmp_path, features, labels, verified, correct, num_classes, settings, seed=0,
                                   recipe="robust", decision="relative"):
    """Same data and seed: the API's run directory holds the data files convert_data.py and
    find_reference.py write, and its DataFrame is inference.py's tsv output (train.py
    --recipe=RECIPE; the relative decision with train.py's calibration of its best model
    and, without --class_score, the calibration's class score: neighbours for robust), so
    the detection error is the same. Without embed_norm in settings both take the
    recipe's. Returns the API's detection error."""
    issues = cleannet.find_label_issues(features, labels, verified=verified, work_dir=str(tmp_path / "api"),
                                        seed=seed, recipe=recipe, decision=decision, **settings)
    tsv = _write_tsvs(str(tmp_path / "tsv"), features, labels, verified, seed, num_classes)
    data = str(tmp_path / "data")
    for split in ("train", "val", "all"):
        _run("util/convert_data.py", "--split=" + split, "--class_list=" + tsv["classes.txt"],
             "--data_path=" + tsv[split + ".tsv"], "--output_dir=" + data)
    img_dim, n_step = features.shape[1], settings["n_step"]
    _run("util/find_reference.py", "--class_list=" + tsv["classes.txt"], "--input_npy=" + data + "/all.npy",
         "--output_dir=" + data, "--num_ref=%d" % settings["num_ref"], "--img_dim=%d" % img_dim,
         "--seed=%d" % seed, "--num_workers=1")
    for name in ("train.npy", "val.npy", "all.npy", "ref.npy"):
        np.testing.assert_array_equal(np.load(os.path.join(tmp_path, "api", "data", name)),
                                      np.load(os.path.join(data, name)), err_msg=name)
    ckpt = str(tmp_path / "cli" / "checkpoints")
    _run("train.py", "--data_dir=" + data, "--checkpoint_dir=" + ckpt, "--log_dir=" + str(tmp_path / "cli" / "log"),
         "--img_dim=%d" % img_dim, "--n_step=%d" % n_step, "--val_interval=%d" % max(1, n_step // 6),
         "--lr_update=%d" % max(1, n_step * 2 // 3), "--seed=%d" % seed, "--recipe=" + recipe,
         *["--%s=%s" % (name, settings[name]) for name in ("num_ref", "batch_size_sup", "batch_size_unsup",
                                                            "val_batch_size", "embed_norm") if name in settings])
    # train.py wrote best/calibration.json; no --img_dim, --num_ref, --embed_norm: the checkpoint's.
    model_flags = ["--data_dir=" + data, "--class_list=" + tsv["classes.txt"], "--checkpoint_dir=" + ckpt + "/best"]
    out = str(tmp_path / "pred.tsv")
    _run("inference.py", "--image_feature_list=" + tsv["every.tsv"], "--output_file=" + out, "--output_format=tsv",
         "--decision=" + decision, *model_flags)
    expected = pd.read_csv(out, sep="\t", dtype={"class_name": str, "best_other_class": str, "suggested_class": str},
                           keep_default_na=False, na_values={"best_other_class": [""], "suggested_class": [""]})
    pd.testing.assert_frame_equal(issues.drop(columns=["weight"]), expected.drop(columns=["key", "url"]))
    error = np.mean((issues["verdict"] == 1) != correct)
    assert error == np.mean((expected["verdict"] == 1) != correct)
    # Equal up to float32 rounding: inference.py's TSV chunks are column-major arrays, and the
    # matrix products round their last bit differently on them (the verdicts above are exact).
    np.testing.assert_allclose(issues["weight"], np.maximum(expected["similarity"], 0.0), rtol=1e-6, atol=1e-7)
    return error


def test_find_label_issues_equals_the_command_line_pipeline(tmp_path):
    """The recommended pair (the defaults): --recipe=robust, its embed_norm (l2norm), the
    relative decision with the neighbours class score."""
    features, labels, verified, correct = noisy_data()
    settings = {name: value for name, value in SETTINGS.items() if name != "embed_norm"}
    _compare_with_the_command_line(tmp_path, features, labels, verified, correct, NUM_CLASSES, settings)
    calibration = json.load(open(os.path.join(tmp_path, "api", "checkpoints", "best", "calibration.json")))
    assert calibration["class_score"] == "neighbours"
    record = json.load(open(os.path.join(tmp_path, "api", "checkpoints", "run.json")))
    assert record["settings"]["recipe"] == "robust" and record["settings"]["embed_norm"] == "l2norm"


@pytest.mark.slow
def test_find_label_issues_with_the_papers_method_equals_the_command_line_pipeline(tmp_path):
    """recipe="paper", decision="threshold": train.py --recipe=paper, inference.py
    --decision=threshold (best other class by the references class score)."""
    features, labels, verified, correct = noisy_data()
    _compare_with_the_command_line(tmp_path, features, labels, verified, correct, NUM_CLASSES, SETTINGS,
                                   recipe="paper", decision="threshold")
    loaded = cleannet.CleanNet.load(str(tmp_path / "api"))  # train.py --recipe=paper calibrated with references
    assert loaded.class_score == loaded.calibration.class_score == "references"
    assert loaded.bank is None  # all.npy is read only for the neighbours class score


@pytest.mark.slow
def test_find_label_issues_on_digits_equals_the_command_line_pipeline(tmp_path):
    """docs/api.md's digits (30% noise, 300 checked labels of digits 0-4), the settings
    find_label_issues chooses there (1700 steps, the robust recipe's l2norm): the same
    table as the tools (train.py --recipe=robust, inference.py --decision=relative)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    true = digits.target
    labels = np.where(rng.random(len(true)) < 0.3, (true + rng.integers(1, 10, len(true))) % 10, true)
    verified = np.full(len(labels), -1)
    checked = rng.choice(np.flatnonzero(labels < 5), 300, replace=False)
    verified[checked] = labels[checked] == true[checked]
    settings = dict(num_ref=32, n_step=1700, batch_size_sup=32, batch_size_unsup=32, val_batch_size=60)
    error = _compare_with_the_command_line(tmp_path, digits.data.astype(np.float32), labels, verified,
                                           labels == true, 10, settings)
    assert error < 0.15


def test_fit_load_score_and_refusing_other_data_in_the_run(tmp_path):
    """CleanNet.fit writes train.py's run directory; CleanNet.load of it scores alike; a
    second fit there with other data is refused with nothing overwritten."""
    features, labels, verified, _ = noisy_data(seed=1)
    run = str(tmp_path / "run")
    model = cleannet.CleanNet(seed=3, **SETTINGS).fit(features, labels, verified=verified, run_dir=run)
    assert model.config == cleannet.ModelConfig(IMG_DIM, 4, "log")
    for name in ("run.json", "run.lock", "inference_model.npz", "best"):
        assert name in os.listdir(os.path.join(run, "checkpoints")), name
    assert os.path.isdir(os.path.join(run, "log", "train"))
    fitted = model.score(features, labels, decision="threshold")
    assert list(fitted.columns) == ["class_name", "similarity", "verdict", "best_other_class",
                                    "best_other_similarity", "margin", "suggested_class", "class_score", "weight"]
    np.testing.assert_array_equal(fitted["verdict"], (fitted["similarity"] >= 0.1).astype(int))
    loaded = cleannet.CleanNet.load(run)
    assert loaded.calibration == model.calibration and loaded.class_names == ["0", "1", "2"]
    assert model.calibration.class_score == loaded.class_score == "neighbours"  # the robust recipe's
    all_npy = np.load(os.path.join(run, "data", "all.npy"))
    np.testing.assert_array_equal(loaded.bank[0], all_npy[:, :-1])
    np.testing.assert_array_equal(loaded.bank[1], all_npy[:, -1])
    pd.testing.assert_frame_equal(loaded.score(features, labels, decision="relative"),
                                  model.score(features, labels, decision="relative"))
    before = {name: open(os.path.join(run, "data", name), "rb").read() for name in os.listdir(os.path.join(run, "data"))}
    with pytest.raises(InputError, match="holds a run on other data or settings"):
        cleannet.CleanNet(seed=3, **SETTINGS).fit(features + 1, labels, verified=verified, run_dir=run)
    assert before == {name: open(os.path.join(run, "data", name), "rb").read() for name in before}


def test_result_table_reads_the_tools_tsv_columns():
    """Cross-class scores by hand: the labelled class's verdict under a relative decision,
    the best other class, and a suggestion only where the label is judged wrong."""
    from cleannet.decision import RelativeDecision
    from cleannet.scoring import CrossClassScores

    scores = CrossClassScores(similarity=np.array([0.9, 0.2], np.float32), own_score=np.array([0.8, 0.1], np.float32),
                              best_other_class=np.array([1, 0], np.int32),
                              best_other_score=np.array([0.3, 0.6], np.float32))
    table = result_table(scores, RelativeDecision(0.0), ["a", "b"], np.array([0, 1]))
    assert table["verdict"].tolist() == [1, 0]
    assert table["best_other_class"].tolist() == ["b", "a"]
    assert table["suggested_class"].isna().tolist() == [True, False] and table["suggested_class"][1] == "a"
    np.testing.assert_allclose(table["margin"], [0.5, -0.5], atol=1e-6)
    np.testing.assert_allclose(table["weight"], [0.9, 0.2], atol=1e-6)


def test_label_issue_summary_counts_per_class():
    table = pd.DataFrame({"class_name": ["a", "a", "b", "b", "b"], "similarity": [0.9, 0.1, 0.5, 0.7, 0.3],
                          "verdict": [1, 0, 1, 1, 0], "suggested_class": [None, "b", None, None, None]})
    summary = cleannet.label_issue_summary(table)
    assert summary.index.tolist() == ["a", "b"]
    assert summary.loc["a", ["samples", "judged_wrong", "suggested"]].tolist() == [2, 1, 1]
    assert summary.loc["b", "share_judged_wrong"] == pytest.approx(1 / 3)
    assert summary.loc["b", "mean_similarity"] == pytest.approx(0.5)


def test_an_unknown_train_override_is_refused_before_anything_is_written(tmp_path):
    features, labels, verified, _ = noisy_data()
    with pytest.raises(InputError, match="train_overrides: unknown TrainConfig fields learning_rat"):
        cleannet.find_label_issues(features, labels, verified=verified, work_dir=str(tmp_path / "run"),
                                   train_overrides={"learning_rat": 0.1}, **SETTINGS)
    assert _no_files(str(tmp_path / "run")) == []


def test_new_samples_are_scored_against_the_training_samples_bank(tmp_path):
    """score(...) on new data with the neighbours class score: each sample's class_score is
    the share of its 20 nearest training samples (all.npy, cosine of the query embeddings,
    computed here with NumPy) that carry its label; a sample of the bank itself is not its
    own neighbour."""
    features, labels, verified, _ = noisy_data(seed=1)
    run = str(tmp_path / "run")
    model = cleannet.CleanNet(seed=3, **SETTINGS).fit(features, labels, verified=verified, run_dir=run)
    all_npy = np.load(os.path.join(run, "data", "all.npy"))
    new = features[:10] * 1.05 + 0.01  # not rows of the bank
    table = model.score(new, labels[:10])

    def embed(x):
        e = model.model.encode_queries(x).astype(np.float64)
        return e / np.linalg.norm(e, axis=1, keepdims=True)
    cosines = embed(new) @ embed(all_npy[:, :-1]).T
    nearest = np.argsort(-cosines, axis=1)[:, :20]
    share = (all_npy[nearest, -1] == labels[:10, None]).mean(axis=1)
    np.testing.assert_allclose(table["class_score"], share, atol=1e-6)
    # A bank row scored as itself: leave-one-out, so its 20 votes come from the other rows.
    bank_row = all_npy[:1, :-1]
    cosines = embed(bank_row) @ embed(all_npy[:, :-1]).T
    others = np.argsort(-cosines[0])[1:21]
    expected = np.mean(all_npy[others, -1] == all_npy[0, -1])
    assert model.score(bank_row, all_npy[:1, -1].astype(int))["class_score"][0] == pytest.approx(expected, abs=1e-6)
    # A train.py checkpoint directory with the references as an array: no bank unless given.
    best, ref = os.path.join(run, "checkpoints", "best"), np.load(os.path.join(run, "data", "ref.npy"))
    bare = cleannet.CleanNet.load(best, references=ref)
    assert bare.class_score == "neighbours" and bare.bank is None
    with pytest.raises(InputError, match="class_score: the neighbours class score needs the training samples' bank"):
        bare.score(new, labels[:10])
    with_bank = cleannet.CleanNet.load(best, references=ref, bank=os.path.join(run, "data", "all.npy"))
    pd.testing.assert_frame_equal(with_bank.score(new, labels[:10]), table)


def test_settings_take_the_recipes_embed_norm():
    """robust L2-normalises (as train.py --recipe=robust without --embed_norm) whatever the
    sign of the features; paper: log for non-negative features, l2norm otherwise; a given
    embed_norm wins."""
    features, labels, _, _ = noisy_data()
    pool = np.arange(len(labels))
    choose = lambda x, given, recipe_norm: api_inputs.choose_settings(
        x, labels, NUM_CLASSES, 50, 10, pool, dict(embed_norm=given), recipe_norm).embed_norm
    assert choose(features, None, cleannet.api.RECIPES["robust"].embed_norm) == "l2norm"
    assert choose(features, None, cleannet.api.RECIPES["paper"].embed_norm) == "log"
    assert choose(features - 10, None, None) == "l2norm"
    assert choose(features, "log", "l2norm") == "log"


@pytest.mark.parametrize("change, message", [
    (dict(recipe="fast"), "recipe: must be one of paper|robust, got 'fast'"),
    (dict(one_class=True), "recipe: 'robust' pairs samples with other classes, but the labels hold 1 class; "
                           "pass recipe='paper'"),
    (dict(seed=2), "has no sample with vlabel 0 (no verified wrong label)"),
    (dict(lone_sample=True), "labels (outside validation): class id: class id 2 has 1 sample(s); the neighbours "
                             "class score"),
], ids=["unknown_recipe", "robust_one_class", "calibration_split_one_verdict", "neighbours_lone_sample"])
def test_recipe_and_calibration_problems_are_refused_before_anything_is_written(tmp_path, change, message):
    features, labels, verified, _ = noisy_data(seed=1)  # seed 2 keeps only correct labels for calibration
    if change.pop("one_class", False):
        labels = np.zeros_like(labels)
    if change.pop("lone_sample", False):  # class 2 (never verified) keeps one sample: no neighbour of its label
        labels = np.where((labels == 2) & (np.arange(len(labels)) != np.flatnonzero(labels == 2)[0]), 0, labels)
        verified = np.where(labels == 2, -1, verified)
    work_dir = str(tmp_path / "run")
    with pytest.raises(InputError) as err:
        cleannet.find_label_issues(features, labels, verified=verified, work_dir=work_dir,
                                   **dict(SETTINGS, **change))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert _no_files(work_dir) == []


def test_the_lazy_api_names_are_the_declared_ones():
    """cleannet.__all__ (what the docs may name) and the lazily imported names are the same."""
    import cleannet

    assert sorted(cleannet.__all__) == sorted(cleannet._LAZY)
    for name in cleannet.__all__:
        assert getattr(cleannet, name).__name__ == name
