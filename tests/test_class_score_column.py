"""inference.py's tsv / jsonl columns say what their names say: class_score is the labelled
class's score on best_other_similarity's scale, and margin = class_score - best_other_similarity
exactly, as the numbers read back from the file."""

import json

import numpy as np
import pytest

from test_every_row_scored import CLASS_NAMES, IMG_DIM, NUM_REF, inference, model_dir  # noqa: F401 (fixture)

TEMPERATURE = 0.1  # the soft nearest reference's temperature (docs: cleannet.scoring)


def write_tsv(path, n, seed):
    rng = np.random.default_rng(seed)
    features = rng.random((n, IMG_DIM)) * 3
    labels = rng.integers(0, len(CLASS_NAMES), n)
    with open(path, "w") as f:
        for i in range(n):
            f.write("k%d\t%s\t%s\n" % (i, CLASS_NAMES[labels[i]], ",".join(repr(float(v)) for v in features[i])))
    return features.astype(np.float32), labels


def expected_class_scores(root, features, class_score):
    """[n, C] class scores computed here with NumPy from the query embeddings."""
    from cleannet.checkpoints import load_inference_model

    model, _, _ = load_inference_model(str(root / "ckpt"), IMG_DIM, NUM_REF, "log")
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    reference = np.load(root / "data" / "ref.npy")
    phi_q = unit(model.encode_queries(features).astype(np.float64))  # [n, 128]
    if class_score == "embedding":
        return phi_q @ unit(model.encode_classes(reference).astype(np.float64)).T
    phi_r = unit(model.encode_queries(reference.reshape(-1, IMG_DIM)).astype(np.float64))
    cos = (phi_q @ phi_r.T).reshape(len(features), len(CLASS_NAMES), NUM_REF)  # [n, C, R]
    return TEMPERATURE * np.log(np.mean(np.exp(cos / TEMPERATURE), axis=2))


@pytest.mark.parametrize("class_score", ["references", "embedding"])
def test_tsv_margin_is_class_score_minus_best_other(model_dir, tmp_path, class_score):  # noqa: F811
    features, labels = write_tsv(tmp_path / "input.tsv", 37, seed=5)
    out = tmp_path / "out.tsv"
    result = inference(model_dir, "--mode=inference", "--image_feature_list=%s" % (tmp_path / "input.tsv"),
                       "--output_format=tsv", "--class_score=" + class_score, "--output_file=%s" % out,
                       "--batch_size=8")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = out.read_text().splitlines()
    header, rows = lines[0].split("\t"), [dict(zip(lines[0].split("\t"), line.split("\t"))) for line in lines[1:]]
    assert header[-1] == "class_score" and len(rows) == 37
    class_score_col = np.array([float(r["class_score"]) for r in rows])
    best_other = np.array([float(r["best_other_similarity"]) for r in rows])
    margin = np.array([float(r["margin"]) for r in rows])
    np.testing.assert_array_equal(margin, class_score_col - best_other)  # exactly, as read back
    scores = expected_class_scores(model_dir, features, class_score)
    own = scores[np.arange(37), labels]
    np.testing.assert_allclose(class_score_col, own, atol=2e-6)
    others = np.where(np.eye(len(CLASS_NAMES), dtype=bool)[labels], -np.inf, scores)
    np.testing.assert_allclose(best_other, others.max(axis=1), atol=2e-6)
    assert [r["best_other_class"] for r in rows] == [CLASS_NAMES[c] for c in others.argmax(axis=1)]
    if class_score == "embedding":  # the same scale as CleanNet's similarity, then
        np.testing.assert_allclose(class_score_col, [float(r["similarity"]) for r in rows], atol=2e-6)


def test_jsonl_margin_is_class_score_minus_best_other(model_dir, tmp_path):  # noqa: F811
    write_tsv(tmp_path / "input.tsv", 9, seed=6)
    out = tmp_path / "out.jsonl"
    result = inference(model_dir, "--mode=inference", "--image_feature_list=%s" % (tmp_path / "input.tsv"),
                       "--output_format=jsonl", "--output_file=%s" % out)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 9
    for record in records:
        assert record["margin"] == record["class_score"] - record["best_other_similarity"]
