"""The documented pipeline through the command-line tools, from images to a cleaned list.

images -> extract_features (all list, verified list) -> convert_data (train, val, all) ->
find_reference -> train.py (a few steps) -> inference.py (tsv, weights) -> make_cleaned_list.
3 classes x 4 images of 32x32 pixels and a ResNet-50 at 32x32 (weights=None, saved by the
test) keep it small; it checks the joins by key and the row counts, not accuracy.
"""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["cat", "dog", "fox"]
SIZE = 32


def run(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable] + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, (args[0], result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_images_to_cleaned_list(tmp_path):
    import keras

    rng = np.random.default_rng(0)
    rows = []
    for c, name in enumerate(CLASSES):
        os.makedirs(tmp_path / "images" / name)
        for i in range(4):
            bgr = np.clip(rng.normal(60 * c + 40, 30, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            assert cv2.imwrite(str(tmp_path / "images" / name / ("%d.png" % i)), bgr)
            rows.append(("%s_%d" % (name, i), "%s/%d.png" % (name, i), name, "0" if i == 3 else "1"))
    (tmp_path / "all_list.tsv").write_text("".join("%s\t%s\t%s\n" % r[:3] for r in rows))
    (tmp_path / "verified_list.tsv").write_text("".join("%s\t%s\t%s\t%s\n" % r for r in rows))
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n")
    keras.utils.set_random_seed(0)
    keras.applications.ResNet50(include_top=False, weights=None, pooling="avg", input_shape=(SIZE, SIZE, 3)) \
        .save_weights(str(tmp_path / "r50.weights.h5"))

    for name in ("all", "verified"):
        run(["util/extract_features.py", "--input_list=%s" % (tmp_path / (name + "_list.tsv")),
             "--image_root=%s" % (tmp_path / "images"), "--output_file=%s" % (tmp_path / (name + ".tsv")),
             "--weights=%s" % (tmp_path / "r50.weights.h5"), "--image_size=%d" % SIZE, "--class_list=%s" % classes])
    data = tmp_path / "data"
    for split, tsv in (("train", "verified"), ("val", "verified"), ("all", "all")):
        run(["util/convert_data.py", "--split=" + split, "--class_list=%s" % classes,
             "--data_path=%s" % (tmp_path / (tsv + ".tsv")), "--output_dir=%s" % data])
    run(["util/find_reference.py", "--class_list=%s" % classes, "--input_npy=%s" % (data / "all.npy"),
         "--output_dir=%s" % data, "--num_ref=2", "--img_dim=2048", "--num_workers=1"])
    model = tmp_path / "model"
    run(["train.py", "--data_dir=%s" % data, "--checkpoint_dir=%s" % (model / "checkpoints"),
         "--log_dir=%s" % (model / "log"), "--img_dim=2048", "--num_ref=2", "--n_step=6", "--val_interval=3",
         "--log_interval=3", "--batch_size_sup=4", "--batch_size_unsup=4", "--val_batch_size=4"])
    run(["inference.py", "--data_dir=%s" % data, "--class_list=%s" % classes,
         "--image_feature_list=%s" % (tmp_path / "all.tsv"), "--checkpoint_dir=%s" % (model / "checkpoints"),
         "--output_file=%s" % (tmp_path / "pred.tsv"), "--output_format=tsv", "--img_dim=2048", "--num_ref=2",
         "--output_weights=%s" % (tmp_path / "weights.tsv")])
    result = run(["util/make_cleaned_list.py", "--image_list=%s" % (tmp_path / "all_list.tsv"),
                  "--predictions=%s" % (tmp_path / "pred.tsv"), "--output_file=%s" % (tmp_path / "clean.tsv")])

    predictions = [line.split("\t") for line in (tmp_path / "pred.tsv").read_text().splitlines()]
    header = predictions[0]
    verdict = {p[header.index("key")]: p[header.index("verdict")] for p in predictions[1:]}
    assert list(verdict) == [r[0] for r in rows]  # one prediction per image, in list order
    expected = "".join("%s\t%s\t%s\n" % r[:3] for r in rows if verdict[r[0]] == "1")
    assert (tmp_path / "clean.tsv").read_text() == expected
    kept = sum(v == "1" for v in verdict.values())
    assert result.stdout.splitlines()[-1].split() == ["total", str(kept), str(len(rows) - kept)]
