"""util/extract_features.py: features equal Keras' own, TSV/npy layouts, resume, faults.

No network: the ResNet-50 is built with weights=None and its weights are saved by the test
as a .weights.h5 file, which the extractor loads.
"""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from process_control import run_flag_error_without_tensorflow

from cleannet.tools import extract_features
from cleannet import partial_features
from noisylabels.errors import InputError
from cleannet.tools.extract_features import extract

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["cat", "dog", "fox"]
PER_CLASS = 4
SIZE = 224


def read_feature_tsv(path):
    """(metadata rows as lists of str, features float64 [N, h]) parsed with NumPy."""
    metas, features = [], []
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            metas.append(fields[:-1])
            features.append(np.array(fields[-1].split(","), dtype=np.float64))
    return metas, np.array(features)


def relative_difference(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """12 PNG images (3 classes x 4) of 224x224 written by cv2, lists (classes interleaved, so the
    all-samples .npy must be regrouped), weights, Keras' features."""
    import keras

    root = tmp_path_factory.mktemp("extract")
    rng = np.random.default_rng(0)
    rows, images = [], []
    for c, name in enumerate(CLASSES):
        os.makedirs(root / "images" / name)
        for i in range(PER_CLASS):
            # smooth colour gradients plus noise, one mean colour per class
            base = np.linspace(0, 1, SIZE)[None, :, None] * rng.uniform(50, 200, 3) + 30 * c
            bgr = np.clip(base + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            relative = "%s/%d.png" % (name, i)
            assert cv2.imwrite(str(root / "images" / relative), bgr)
            rows.append(("%s_%d" % (name, i), relative, name, ("1", "0", "1", "-1")[i]))
            images.append(bgr[:, :, ::-1].astype(np.float32))  # RGB
    order = [c * PER_CLASS + i for i in range(PER_CLASS) for c in range(len(CLASSES))]  # classes interleaved
    rows, images = [rows[k] for k in order], [images[k] for k in order]
    (root / "all_list.tsv").write_text("".join("%s\t%s\t%s\n" % r[:3] for r in rows))
    (root / "verified_list.tsv").write_text("".join("%s\t%s\t%s\t%s\n" % r for r in rows))
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    keras.utils.set_random_seed(1)
    model = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg", input_shape=(SIZE, SIZE, 3))
    model.save_weights(str(root / "resnet50.weights.h5"))
    expected = model.predict(keras.applications.resnet50.preprocess_input(np.stack(images)), verbose=0)
    return dict(root=root, rows=rows, expected=expected, images=images, weights=str(root / "resnet50.weights.h5"))


@pytest.fixture(scope="module", autouse=True)
def reuse_models():
    """Builds each (backbone, weights, size) model and its traced function once in this module
    (the extractor builds them per call; the first call still loads the weights file)."""
    from cleannet import feature_extractor

    build, make_embed = feature_extractor.build_backbone, feature_extractor.make_embed_function
    models, embeds = {}, {}

    def cached_build(*args):
        if args not in models:
            models[args] = build(*args)
        return models[args]

    def cached_embed(model, backbone):
        if id(model) not in embeds:
            embeds[id(model)] = make_embed(model, backbone)
        return embeds[id(model)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feature_extractor, "build_backbone", cached_build)
        patch.setattr(feature_extractor, "make_embed_function", cached_embed)
        yield


def run_extract(ws, output, listing="all_list.tsv", **kwargs):
    kwargs.setdefault("batch_size", 5)
    return extract(str(ws["root"] / listing), str(output), backbone="resnet50", weights=ws["weights"],
                   image_root=str(ws["root"] / "images"), **kwargs)


@pytest.fixture(scope="module")
def extracted(workspace):
    """The all-samples list extracted once, uninterrupted (batches of 5: 5 + 5 + 2)."""
    output = workspace["root"] / "all.tsv"
    result = run_extract(workspace, output)
    return output, result


def test_features_equal_the_keras_model_called_directly(workspace, extracted):
    output, result = extracted
    metas, features = read_feature_tsv(output)
    assert metas == [list(r[:3]) for r in workspace["rows"]]  # same rows, same order, path in the url column
    assert features.shape == (12, 2048) and result.rows == 12 and result.skipped_keys == []
    assert relative_difference(features, workspace["expected"]) < 1e-3
    assert not os.path.exists(str(output) + ".partial") and not os.path.exists(str(output) + ".partial.features")


def test_npy_output_equals_the_conversion_of_the_tsv(workspace, extracted, tmp_path):
    from cleannet.tools import convert_data

    classes = str(workspace["root"] / "classes.txt")
    convert_data.convert("all", classes, str(extracted[0]), str(tmp_path / "conv"))
    run_extract(workspace, tmp_path / "new_dir" / "all.npy", output_format="npy", class_list=classes)
    table = np.load(tmp_path / "new_dir" / "all.npy")
    np.testing.assert_array_equal(table, np.load(tmp_path / "conv" / "all.npy"))
    # Independently: grouped by class id, list order within a class, features from Keras.
    rows = workspace["rows"]
    grouped = sorted(range(len(rows)), key=lambda i: CLASSES.index(rows[i][2]))  # a stable sort
    np.testing.assert_array_equal(table[:, 2048], [CLASSES.index(rows[i][2]) for i in grouped])
    assert relative_difference(table[:, :2048], workspace["expected"][grouped]) < 1e-3

    # Verified list: rows with vlabel -1 dropped; class ids, vlabels from the list, features from Keras.
    direct = run_extract(workspace, tmp_path / "train.npy", listing="verified_list.tsv", output_format="npy",
                         class_list=classes)
    table = np.load(tmp_path / "train.npy")
    keep = [i for i, r in enumerate(workspace["rows"]) if r[3] != "-1"]
    assert direct.rows == len(keep) == 9 and table.shape == (9, 2050)
    np.testing.assert_array_equal(table[:, 2048], [CLASSES.index(workspace["rows"][i][2]) for i in keep])
    np.testing.assert_array_equal(table[:, 2049], [int(workspace["rows"][i][3]) for i in keep])
    assert relative_difference(table[:, :2048], workspace["expected"][keep]) < 1e-3


def test_resume_after_interruption_gives_the_same_file(workspace, extracted, tmp_path, monkeypatch):
    output = tmp_path / "resumed.tsv"
    original_append = partial_features.PartialFeatures.append
    calls = []

    def append_then_stop(self, *args):
        original_append(self, *args)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # stopped after the first finished batch

    monkeypatch.setattr(partial_features.PartialFeatures, "append", append_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_extract(workspace, output)
    monkeypatch.setattr(partial_features.PartialFeatures, "append", original_append)
    assert not output.exists()
    log = str(output) + ".partial"
    assert open(log).read().splitlines()[1].split("\t")[:3] == ["5", "5", "dog_1"]
    # A torn write of the next batch (SIGKILL in mid-write) is cut off on resume.
    with open(log, "a") as f:
        f.write("10\t10\tfox")
    with open(log + ".features", "ab") as f:
        f.write(b"\0" * 4096 * 3)
    done = []
    monkeypatch.setattr(extract_features._Extraction, "finish_batch",
                        lambda self, rows, *a: (done.append(len(rows)),
                                                _original_finish(self, rows, *a)))
    run_extract(workspace, output)
    assert done == [5, 2]  # only the batches left were extracted
    assert output.read_bytes() == extracted[0].read_bytes()
    assert not os.path.exists(log)


_original_finish = extract_features._Extraction.finish_batch


def _state_of_other_settings(workspace, output, **changes):
    """A resume state the extractor wrote with other settings: one batch of 5 garbage rows."""
    settings = dict(input_list=str(workspace["root"] / "all_list.tsv"), image_root=str(workspace["root"] / "images"),
                    backbone="resnet50", image_size=SIZE, batch_size=5, shard=[0, 1], weights=workspace["weights"])
    store = partial_features.PartialFeatures(str(output), dict(settings, **changes), 2048)
    store.open()
    store.append(5, np.full((5, 2048), 7.0, np.float32), [], "dog_1")
    store.close()


def test_resume_state_of_other_settings_is_replaced_with_a_notice(workspace, extracted, tmp_path, caplog):
    output = tmp_path / "o.tsv"
    _state_of_other_settings(workspace, output, image_size=64)
    run_extract(workspace, output)
    assert output.read_bytes() == extracted[0].read_bytes()  # no garbage row from the old state
    notices = [r.getMessage() for r in caplog.records if "replacing the unfinished extraction" in r.getMessage()]
    assert len(notices) == 1 and "image_size=64" in notices[0]
    assert sorted(os.listdir(tmp_path)) == ["o.tsv"]


def test_resume_state_with_another_batch_size_is_resumed(workspace, extracted, tmp_path, monkeypatch):
    output = tmp_path / "o.tsv"
    _state_of_other_settings(workspace, output, batch_size=5)
    calls = []
    monkeypatch.setattr(extract_features._Extraction, "finish_batch",
                        lambda self, rows, *a: (calls.append(len(rows)), _original_finish(self, rows, *a)))
    run_extract(workspace, output, batch_size=7)
    assert calls == [7]  # rows 5..11 only: the 5 stored rows were kept
    metas, features = read_feature_tsv(output)
    assert [m[0] for m in metas] == [r[0] for r in workspace["rows"]]
    np.testing.assert_array_equal(features[:5], 7.0)  # the stored rows, as stored


def test_resume_state_from_another_list_is_replaced(workspace, extracted, tmp_path):
    output = tmp_path / "o.tsv"
    settings = dict(input_list=str(workspace["root"] / "all_list.tsv"), image_root=str(workspace["root"] / "images"),
                    backbone="resnet50", image_size=SIZE, batch_size=5, shard=[0, 1], weights=workspace["weights"])
    store = partial_features.PartialFeatures(str(output), settings, 2048)
    store.open()
    store.append(5, np.full((5, 2048), 7.0, np.float32), [], "not_a_key_of_the_list")
    store.close()
    run_extract(workspace, output)
    assert output.read_bytes() == extracted[0].read_bytes()


@pytest.mark.parametrize("log, features", [
    (b"", None),  # an empty log (e.g. `touch`)
    (b"my notes\n", b"my data"),  # a user's files of those names
    (b'# {"tool": "other_tool", "format_version": 1, "settings": {}}\n', b""),
    (None, b"my data"),  # a features file without its log
], ids=["empty_log", "user_files", "other_tools_marker", "features_without_log"])
def test_files_the_extractor_did_not_write_are_refused_untouched(workspace, tmp_path, log, features):
    output = tmp_path / "o.tsv"
    paths = {str(output) + ".partial": log, str(output) + ".partial.features": features}
    for path, content in paths.items():
        if content is not None:
            open(path, "wb").write(content)
    with pytest.raises(InputError, match="proves"):
        run_extract(workspace, output)
    for path, content in paths.items():
        assert (open(path, "rb").read() if os.path.exists(path) else None) == content
    assert not output.exists() and not os.path.exists(str(output) + ".lock")


def test_damaged_resume_state_of_ours_is_replaced(workspace, extracted, tmp_path):
    output = tmp_path / "o.tsv"
    _state_of_other_settings(workspace, output)
    with open(str(output) + ".partial", "a") as f:
        f.write("garbage\tline\n")
    run_extract(workspace, output)
    assert output.read_bytes() == extracted[0].read_bytes()


def test_second_run_on_the_same_output_is_refused_naming_the_lock(workspace, tmp_path):
    from noisylabels.run_record import FileLock

    output = tmp_path / "o.tsv"
    _state_of_other_settings(workspace, output)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    with FileLock(str(output) + ".lock"):  # the first run, still running
        with pytest.raises(InputError) as err:
            run_extract(workspace, output)
        assert str(err.value).startswith("%s.lock: is held by another run (pid %d" % (output, os.getpid()))
        assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert not output.exists()


@pytest.mark.parametrize("link", ["symlink", "hardlink", "symlinked_directory"])
def test_output_reaching_an_input_through_a_link_is_refused(workspace, tmp_path, link):
    listing = tmp_path / "list.tsv"
    listing.write_bytes((workspace["root"] / "all_list.tsv").read_bytes())
    original = listing.read_bytes()
    if link == "symlinked_directory":
        os.symlink(tmp_path, tmp_path / "alias")
        output = tmp_path / "alias" / "list.tsv"
    else:
        output = tmp_path / "out.tsv"
        (os.symlink if link == "symlink" else os.link)(listing, output)
    with pytest.raises(InputError, match="is also --input_list"):
        extract(str(listing), str(output), weights=workspace["weights"], image_root=str(workspace["root"] / "images"),
                overwrite=True)
    assert listing.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == sorted(["list.tsv"] + (["alias"] if "directory" in link else ["out.tsv"]))


def test_imagenet_weights_offline_one_line_nothing_left(workspace, tmp_path, monkeypatch):
    """No network: Keras' fetch is made to fail as it does offline, with an empty Keras cache."""
    import urllib.error

    from keras.src.backend import config
    from keras.src.utils import file_utils

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path / "keras_home"))
    out_dir = tmp_path / "out"
    with pytest.raises(InputError) as err:
        extract(str(workspace["root"] / "all_list.tsv"), str(out_dir / "all.tsv"), weights="imagenet",
                image_root=str(workspace["root"] / "images"))
    message = str(err.value)
    assert message.startswith("--weights: cannot download the ImageNet weights of ResNet50 (URL fetch failure on ")
    assert "pass --weights=FILE.weights.h5" in message and "\n" not in message
    assert not out_dir.exists()  # no partial files, no lock, not even the directory
    # The corrected command then runs, with nothing to delete first.
    result = extract(str(workspace["root"] / "all_list.tsv"), str(out_dir / "all.tsv"), weights=workspace["weights"],
                     image_root=str(workspace["root"] / "images"), batch_size=5)
    assert result.rows == 12 and sorted(os.listdir(out_dir)) == ["all.tsv"]


def test_imagenet_weights_offline_cli_exit_2(workspace, tmp_path):
    """The command line offline: a proxy on a closed local port makes every fetch fail at once."""
    listing = workspace["root"] / "all_list.tsv"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_HOME=str(tmp_path / "keras_home"),
               https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9", no_proxy="",
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
    args = [sys.executable, "util/extract_features.py", "--input_list=%s" % listing,
            "--image_root=%s" % (workspace["root"] / "images"), "--output_file=%s" % (tmp_path / "out" / "all.tsv")]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot download the ImageNet weights of ResNet50" in errors[0], result.stderr[-3000:]
    assert "--weights=FILE.weights.h5" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def write_bad_list(ws, tmp_path, path_column):
    listing = tmp_path / "bad_list.tsv"
    good = "cat_0\tcat/0.png\tcat\n"
    listing.write_text(good + "bad\t%s\tdog\n" % path_column + good.replace("cat_0", "cat_9"))
    return listing


@pytest.mark.parametrize("path_column, words", [
    ("dog/missing.png", "image file not found"),
    ("../all_list.tsv", "leaves the image root"),
    ("/etc/hostname", "leaves the image root"),
], ids=["missing_file", "dotdot", "absolute_outside"])
def test_missing_and_escaping_paths_are_refused(workspace, tmp_path, path_column, words):
    listing = write_bad_list(workspace, tmp_path, path_column)
    with pytest.raises(InputError) as err:
        extract(str(listing), str(tmp_path / "out.tsv"), weights=workspace["weights"],
                image_root=str(workspace["root"] / "images"))
    assert str(err.value).startswith("%s:2: image_path: " % listing) and words in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["bad_list.tsv"]


def test_corrupt_image_cli_one_line_exit_2_no_output(workspace, tmp_path):
    images = workspace["root"] / "images"
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    listing = write_bad_list(workspace, tmp_path, "broken.jpg")
    args = [sys.executable, "util/extract_features.py", "--input_list=%s" % listing, "--image_root=%s" % images,
            "--output_file=%s" % (tmp_path / "out.tsv"), "--weights=%s" % workspace["weights"], "--image_size=32"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: %s:2: image_path: cannot decode image %s"
                                                     % (listing, images / "broken.jpg")), result.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["bad_list.tsv"]


@pytest.mark.parametrize("batch_size", [1, 2], ids=["batch_of_only_the_bad_image", "batch_with_a_good_image"])
def test_skip_bad_images_skips_and_reports(workspace, tmp_path, batch_size):
    images = workspace["root"] / "images"
    (images / "empty.png").write_bytes(b"")
    listing = write_bad_list(workspace, tmp_path, "empty.png")
    result = extract(str(listing), str(tmp_path / "out.tsv"), weights=workspace["weights"], image_root=str(images),
                     image_size=32, skip_bad_images=True, batch_size=batch_size)
    assert result.skipped_keys == ["bad"] and result.rows == 2
    metas, features = read_feature_tsv(tmp_path / "out.tsv")
    assert [m[0] for m in metas] == ["cat_0", "cat_9"]
    np.testing.assert_allclose(features[0], features[1], rtol=1e-5)  # the same image twice


def test_backbone_flag_choices_match_the_table():
    from cleannet import feature_extractor

    assert extract_features.BACKBONE_NAMES == tuple(feature_extractor.BACKBONES)


def test_pipeline_resizes_only_other_sizes(workspace, tmp_path):
    from cleannet.feature_extractor import make_batch_dataset

    rgb = np.random.default_rng(3).integers(0, 256, (40, 60, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "small.png"), rgb[:, :, ::-1])
    paths = [str(workspace["root"] / "images" / "cat" / "0.png"), str(tmp_path / "small.png")]
    dataset = make_batch_dataset(lambda: iter([(0, np.array([0, 1]), np.array(paths, dtype=object))]), SIZE, 4)
    [(number, indices, batch)] = list(dataset)
    np.testing.assert_array_equal(batch[0].numpy(), workspace["images"][0])  # 224x224: untouched
    expected = cv2.resize(rgb.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(batch[1].numpy(), expected, atol=0.05)
    assert int(number) == 0 and indices.numpy().tolist() == [0, 1]


def test_shards_concatenate_to_the_whole(workspace, extracted, tmp_path):
    parts = []
    for shard in range(2):
        output = tmp_path / ("shard%d.tsv" % shard)
        run_extract(workspace, output, shard_index=shard, num_shards=2)
        parts.append(output.read_bytes())
    assert parts[0].count(b"\n") == 6
    # Batches start at the shard's first row, so values may differ in the last bits.
    _, whole = read_feature_tsv(extracted[0])
    (tmp_path / "merged.tsv").write_bytes(b"".join(parts))
    metas, merged = read_feature_tsv(tmp_path / "merged.tsv")
    assert [m[0] for m in metas] == [r[0] for r in workspace["rows"]]
    assert relative_difference(merged, whole) < 1e-5


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_same_file(workspace, extracted, tmp_path):
    """The CLI killed (SIGKILL) after its first finished batch, then run again."""
    import time

    output = tmp_path / "killed.tsv"
    args = [sys.executable, "util/extract_features.py", "--input_list=%s" % (workspace["root"] / "all_list.tsv"),
            "--image_root=%s" % (workspace["root"] / "images"), "--output_file=%s" % output,
            "--weights=%s" % workspace["weights"], "--batch_size=5"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = str(output) + ".partial"
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if os.path.exists(log) and open(log).read().count("\n") >= 2:  # header + one batch
            break
        time.sleep(0.02)
    process.kill()
    assert process.wait() == -9 and not output.exists()
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Resuming" in result.stderr
    assert output.read_bytes() == extracted[0].read_bytes()


@pytest.mark.slow
def test_two_concurrent_runs_never_give_a_wrong_row(workspace, extracted, tmp_path):
    """Two CLI runs on one output at once: one writes it, the other is refused (the lock, or
    the finished output without --overwrite); the output equals an uninterrupted run's."""
    output = tmp_path / "both.tsv"
    args = [sys.executable, "util/extract_features.py", "--input_list=%s" % (workspace["root"] / "all_list.tsv"),
            "--image_root=%s" % (workspace["root"] / "images"), "--output_file=%s" % output,
            "--weights=%s" % workspace["weights"], "--batch_size=5"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    runs = [subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = [line for code, err in results if code == 2 for line in err.splitlines() if line.startswith("error:")]
    assert len(loser) == 1 and ("%s.lock: is held by another run (pid " % output in loser[0]
                                or "exists; pass --overwrite" in loser[0]), loser
    assert output.read_bytes() == extracted[0].read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["both.tsv"]


CLI_FLAG_ERRORS = [
    # id, flags ("{tmp}": tmp_path; a bare name leaves that flag out), parts of the one error line
    ("no_input_list", ["--input_list"], ["flag --input_list=None:", "must have a value other than None"]),
    ("no_output_file", ["--output_file"], ["flag --output_file=None:", "must have a value other than None"]),
    ("unknown_format", ["--output_format=csv"], ["flag --output_format=csv:", "one of <tsv|npy>"]),
    ("npy_without_class_list", ["--output_format=npy"], ["output_format=npy, class_list=None:",
                                                         "--output_format=npy needs --class_list"]),
    ("unknown_backbone", ["--backbone=vgg16"], ["flag --backbone=vgg16:", "one of <resnet50|efficientnet_v2_b0>"]),
    ("image_size_16", ["--image_size=16"], ["flag --image_size=16:", "not integer >= 32"]),
    ("batch_size_0", ["--batch_size=0"], ["flag --batch_size=0:", "not a positive integer"]),
    ("shard_out_of_range", ["--num_shards=2", "--shard_index=2"], ["--shard_index must be less than --num_shards"]),
    ("missing_list", ["--input_list={tmp}/none.tsv"], ["{tmp}/none.tsv: --input_list: file not found"]),
    ("missing_class_list", ["--class_list={tmp}/none.txt"], ["{tmp}/none.txt: --class_list: file not found"]),
    ("image_root_not_a_directory", ["--image_root={tmp}/none"], ["--image_root: not a directory: {tmp}/none"]),
    ("output_is_the_input", ["--output_file={tmp}/list.tsv"], ["{tmp}/list.tsv: --output_file: is also --input_list"]),
    ("output_is_a_symlink_to_the_input", ["--output_file={tmp}/link.tsv"],
     ["{tmp}/link.tsv: --output_file: is also --input_list"]),
    ("output_is_a_hard_link_to_the_input", ["--output_file={tmp}/hard.tsv"],
     ["{tmp}/hard.tsv: --output_file: is also --input_list"]),
]


@pytest.mark.parametrize("args, expected", [case[1:] for case in CLI_FLAG_ERRORS],
                         ids=[case[0] for case in CLI_FLAG_ERRORS])
def test_cli_flag_and_path_errors_come_before_tensorflow(tmp_path, args, expected):
    """A bad or missing flag, a missing input or a refused output is one stderr line naming it,
    exit status 2, and TensorFlow is never imported (python's import-time report lists every
    module imported)."""
    (tmp_path / "list.tsv").write_text("k1\ta.png\tcat\n")
    os.symlink(tmp_path / "list.tsv", tmp_path / "link.tsv")
    os.link(tmp_path / "list.tsv", tmp_path / "hard.tsv")
    defaults = {"--input_list": "--input_list=%s" % (tmp_path / "list.tsv"),
                "--output_file": "--output_file=%s" % (tmp_path / "out.tsv")}
    error = run_flag_error_without_tensorflow("util/extract_features.py", defaults, args, tmp_path)
    assert all(part.format(tmp=tmp_path) in error for part in expected), error
    assert sorted(os.listdir(tmp_path)) == ["hard.tsv", "link.tsv", "list.tsv"]
    assert (tmp_path / "list.tsv").read_text() == "k1\ta.png\tcat\n"
