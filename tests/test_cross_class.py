"""Cross-class scores (cleannet.scoring) against an independent NumPy forward pass, and the
decisions and output columns built on them (cleannet.decision, cleannet.outputs)."""

import io
import json

import numpy as np
import pytest

from cleannet.decision import RelativeDecision, ThresholdDecision, suggested_classes
from cleannet.outputs import ResultWriter, WeightWriter
from cleannet.scoring import REFERENCE_TEMPERATURE, CrossClassScores
from test_scoring import NUM_CLASSES, _dense, _normalize, random_data, random_model, scorer_of


def numpy_query_embeddings(model, x, embed_norm):
    """φ_q [n, 128] in float64, unit length."""
    q = model.query_encoder
    phi = _dense(q.embedding, _dense(q.hidden, _normalize(np.asarray(x, np.float64), embed_norm)))
    return phi / np.linalg.norm(phi, axis=-1, keepdims=True)


def numpy_class_embeddings(model, reference, embed_norm):
    """φ_s [C, 128] in float64, unit length: attention over each class's references."""
    r = model.ref_set_encoder
    context = np.asarray(r.context.numpy(), np.float64)
    out = []
    for refs in reference:
        h = _dense(r.hidden, _dense(r.hidden0, _normalize(np.asarray(refs, np.float64), embed_norm)))
        logits = _dense(r.attention_key, h) @ context
        alpha = np.exp(logits - logits.max())
        out.append(_dense(r.embedding, (alpha / alpha.sum()) @ h))
    out = np.array(out)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def numpy_class_scores(model, features, reference, embed_norm, class_score):
    """[n, C] class scores computed from the weights with NumPy."""
    phi_q = numpy_query_embeddings(model, features, embed_norm)
    if class_score == "embedding":
        return phi_q @ numpy_class_embeddings(model, reference, embed_norm).T
    refs = numpy_query_embeddings(model, reference.reshape(-1, reference.shape[-1]), embed_norm)
    cosines = (phi_q @ refs.T).reshape(len(features), reference.shape[0], reference.shape[1])
    tau = REFERENCE_TEMPERATURE
    return tau * np.log(np.mean(np.exp(cosines / tau), axis=2))  # soft maximum over the references


@pytest.mark.parametrize("class_score,embed_norm", [("embedding", "log"), ("references", "log"),
                                                    ("references", "l2norm")])
def test_all_class_scores_match_numpy(class_score, embed_norm):
    model = random_model(embed_norm)
    features, class_ids, reference = random_data(29)
    expected = numpy_class_scores(model, features, reference, embed_norm, class_score)  # [29, C]
    scorer = scorer_of(model, reference)
    got = scorer.score_all_classes(features, class_score, batch_size=4)
    assert got.shape == (29, NUM_CLASSES)
    np.testing.assert_allclose(got, expected, atol=3e-5)
    assert np.ptp(expected, axis=1).min() > 1e-3  # classes really score differently

    against = scorer.score_against_all(features, class_ids, class_score, batch_size=6)  # 29 = 4 × 6 + 5
    rows = np.arange(29)
    np.testing.assert_allclose(against.own_score, expected[rows, class_ids], atol=3e-5)
    others = expected.copy()
    others[rows, class_ids] = -np.inf
    np.testing.assert_array_equal(against.best_other_class, others.argmax(axis=1))
    np.testing.assert_allclose(against.best_other_score, others.max(axis=1), atol=3e-5)
    np.testing.assert_allclose(against.margin, expected[rows, class_ids] - others.max(axis=1), atol=6e-5)
    assert np.all(against.best_other_class != class_ids)
    np.testing.assert_array_equal(against.similarity, scorer.score(features, class_ids, batch_size=6))


def test_embedding_score_of_own_class_is_cleannets_similarity():
    model = random_model("log")
    features, class_ids, reference = random_data(17)
    scores = scorer_of(model, reference).score_against_all(features, class_ids, "embedding")
    np.testing.assert_allclose(scores.own_score, scores.similarity, atol=2e-6)


def test_batch_size_does_not_change_the_scores():
    model = random_model("log")
    features, class_ids, reference = random_data(40)
    scorer = scorer_of(model, reference)
    one = scorer.score_against_all(features, class_ids, batch_size=1)
    many = scorer.score_against_all(features, class_ids, batch_size=4096)
    np.testing.assert_allclose(one.best_other_score, many.best_other_score, atol=1e-6)
    np.testing.assert_array_equal(one.best_other_class, many.best_other_class)


def test_single_class_has_no_other_class_and_empty_input():
    model = random_model("log")
    features, _, reference = random_data(3)
    scorer = scorer_of(model, reference[:1])
    scores = scorer.score_against_all(features, np.zeros(3, np.int32))
    assert scores.best_other_class.tolist() == [-1, -1, -1]
    assert np.all(np.isinf(scores.margin))
    empty = scorer.score_against_all(np.zeros((0, features.shape[1]), np.float32), np.zeros([0], np.int32))
    assert len(empty) == 0


SCORES = CrossClassScores(similarity=np.array([0.5, 0.05, 0.3, 0.2], np.float32),
                          own_score=np.array([0.6, 0.1, 0.2, 0.7], np.float32),
                          best_other_class=np.array([1, 2, 0, -1], np.int32),
                          best_other_score=np.array([0.4, 0.5, 0.3, -np.inf], np.float32))


def test_decisions_by_hand():
    # margins: 0.2, -0.4, -0.1, +inf
    assert ThresholdDecision(0.1).verdicts(SCORES.similarity).tolist() == [1, 0, 1, 1]
    assert RelativeDecision(-0.2).verdicts(SCORES.similarity, SCORES.margin).tolist() == [1, 0, 1, 1]
    assert RelativeDecision(0.0).verdicts(SCORES.similarity, SCORES.margin).tolist() == [1, 0, 0, 1]
    assert RelativeDecision(-0.2, threshold=0.25).verdicts(SCORES.similarity, SCORES.margin).tolist() == [1, 0, 1, 0]
    # float32 0.1 read as a Python float (0.10000000149) is ≥ 0.1, as in the original's writer
    assert ThresholdDecision(0.1).verdicts(np.array([0.1, 0.0999999], np.float32)).tolist() == [1, 0]
    # suggested: judged wrong AND the other class scores higher
    assert suggested_classes(SCORES, [1, 0, 0, 0]).tolist() == [-1, 2, 0, -1]


def test_tsv_and_jsonl_cross_class_columns():
    names = ["cat", "dog", "eel"]
    out = io.StringIO()
    ResultWriter(out, "tsv", RelativeDecision(0.0), class_list=names).write(
        SCORES, keys=["a", "b", "c", "d"], class_names=["cat", "cat", "dog", "eel"])
    rows = [line.split("\t") for line in out.getvalue().splitlines()]
    assert rows[0] == ["key", "url", "class_name", "similarity", "verdict", "best_other_class",
                       "best_other_similarity", "margin", "suggested_class", "class_score"]
    assert rows[1][:9] == ["a", "", "cat", "0.5", "1", "dog", "0.400000006", rows[1][7], ""]
    assert float(rows[1][7]) == pytest.approx(0.2, abs=1e-7)
    assert rows[2][4] == "0" and rows[2][8] == "eel"   # margin -0.4 < 0: wrong, eel suggested
    assert rows[3][4] == "0" and rows[3][8] == "cat"   # margin -0.1
    assert rows[4][5:9] == ["", "", "", ""]            # no other class

    out = io.StringIO()
    ResultWriter(out, "jsonl", 0.1, class_list=names).write(SCORES, keys=list("abcd"))
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records[1]["verdict"] == 0 and records[1]["suggested_class"] == "eel"
    assert records[0]["suggested_class"] is None and records[3]["best_other_class"] is None
    assert records[2]["margin"] == pytest.approx(-0.1, abs=1e-7)


def test_hard_weight_follows_the_decision_soft_weight_stays_cos():
    out = io.StringIO()
    WeightWriter(out, RelativeDecision(0.0)).write(SCORES, list("abcd"), ["cat", "cat", "dog", "eel"])
    rows = [line.split("\t") for line in out.getvalue().splitlines()[1:]]
    assert [int(r[3]) for r in rows] == [1, 0, 0, 1]
    np.testing.assert_allclose([float(r[2]) for r in rows], np.maximum(0, SCORES.similarity), rtol=1e-6)
