"""inference.py's output writers: plain, tsv, jsonl, and the sample weights."""

import io
import json

import numpy as np

from cleannet.outputs import ResultWriter, WeightWriter

SIMS = np.array([0.5, 0.1, 0.0999, -0.3], np.float32)


def test_plain_is_one_similarity_per_line_reading_back_exactly():
    out = io.StringIO()
    ResultWriter(out, "plain", 0.1).write(SIMS)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    np.testing.assert_array_equal(np.array(lines, dtype=np.float32), SIMS)


def test_tsv_has_header_fields_and_verdict_at_threshold():
    out = io.StringIO()
    writer = ResultWriter(out, "tsv", 0.1)
    writer.write(SIMS, keys=["a", "b", "c", "d"], urls=["http://x/a.jpg", None, None, None],
                 class_names=["cat", "dog", "dog", "eel"])
    lines = out.getvalue().splitlines()
    assert lines[0] == "key\turl\tclass_name\tsimilarity\tverdict"
    assert lines[1].split("\t") == ["a", "http://x/a.jpg", "cat", "0.5", "1"]
    assert lines[2].split("\t")[4] == "1"   # 0.1 >= 0.1
    assert lines[3].split("\t")[4] == "0"   # 0.0999 < 0.1
    assert lines[4].split("\t")[1] == ""    # no url


def test_jsonl_fields():
    out = io.StringIO()
    ResultWriter(out, "jsonl", 0.1).write(SIMS[:2], keys=["a", "b"], urls=None, class_names=["cat", "dog"])
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert records[0] == {"key": "a", "url": None, "class_name": "cat", "similarity": 0.5, "verdict": 1}
    assert records[1]["similarity"] == float(np.float32(0.1)) or abs(records[1]["similarity"] - 0.1) < 1e-8


def test_sample_weights_soft_and_hard():
    out = io.StringIO()
    WeightWriter(out, 0.1).write(SIMS, ["a", "b", "c", "d"], ["cat", "dog", "dog", "eel"])
    rows = [line.split("\t") for line in out.getvalue().splitlines()]
    assert rows[0] == ["key", "class_name", "soft_weight", "hard_weight"]
    soft = np.array([float(r[2]) for r in rows[1:]])
    hard = [int(r[3]) for r in rows[1:]]
    np.testing.assert_allclose(soft, np.maximum(0.0, SIMS), rtol=1e-6)  # max(0, cos)
    assert hard == [1, 1, 0, 0]                                         # 1[cos >= 0.1]
