"""The review page (util/report.py) and the queue merge (util/merge_queue.py): values and bad input.

The browser-side checks (console, thumbnails, sorting, download) are in test_review_browser.py.
"""

import os
import re

import numpy as np
import pytest

from process_control import run_cli
from review_fixtures import class_names, write_class_list, write_image_list, write_images, write_predictions

from cleannet.decision import RelativeDecision, ThresholdDecision
from cleannet.review import decision_used
from cleannet.review.build import ReportConfig, build_report
from cleannet.review.predictions import read_predictions
from cleannet.review.queue import UNVERIFIED_PICKS, select_queue
from noisylabels.errors import InputError


def assert_one_line_error(proc, *parts):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error:"), proc.stderr[-2000:]
    for part in parts:
        assert part in lines[-1], (part, lines[-1])


@pytest.fixture
def small(tmp_path):
    """200 samples of 5 classes with images (one missing, one not an image), a verified list for classes 0-1."""
    pred = str(tmp_path / "pred.tsv")
    keys, labels, similarity, margin, verdict = write_predictions(pred, 200, 5, seed=1)
    classes = write_class_list(tmp_path / "classes.txt", 5)
    rows = write_images(str(tmp_path / "images"), keys, labels)
    os.remove(tmp_path / "images" / rows[0][1])
    with open(tmp_path / "images" / rows[1][1], "wb") as f:
        f.write(b"not an image")
    image_list = write_image_list(tmp_path / "list.tsv", rows)
    verified = tmp_path / "verified.tsv"
    verified.write_text("v1\tclass_000\t1\t1,2\nv2\tclass_001\t0\t1,2\n%s\tclass_%03d\t-1\t1,2\n" % (keys[5], 4))
    return dict(tmp=tmp_path, pred=pred, classes=classes, image_list=image_list, keys=keys, labels=labels,
                similarity=similarity, margin=margin, verdict=verdict, rows=rows, verified=str(verified))


# ----------------------------------------------------------------------------------- selection


def test_queue_takes_the_least_certain_per_round_and_favours_classes_without_labels():
    # class 0 verified, class 1 not; certainties chosen by hand
    label = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    certainty = np.array([0.5, 0.1, 0.3, 0.9, 0.2, 0.4, 0.05, 0.7])
    order = select_queue(label, certainty, 8, {0})
    # round 0: class 0's least certain (1: 0.1) and class 1's UNVERIFIED_PICKS (=3) least certain (6, 4, 5),
    # sorted by certainty: 6 (0.05), 1 (0.1), 4 (0.2), 5 (0.4); round 1: 2 (0.3), 7 (0.7), 3 (0.9); round 2: 0
    assert UNVERIFIED_PICKS == 3
    assert order.tolist() == [6, 1, 4, 5, 2, 7, 3, 0]
    assert select_queue(label, certainty, 3, {0}).tolist() == [6, 1, 4]
    excluded = select_queue(label, certainty, 8, {0}, exclude=np.array([0, 1, 0, 0, 0, 0, 1, 0], bool))
    assert excluded.tolist() == [4, 2, 5, 7, 0, 3]  # without 1 and 6


def test_queue_with_verdicts_keeps_each_class_to_its_share_of_wrong_verdicts():
    # class 0 (no verification labels): 3 of 6 judged wrong (p = 1/2), the three least certain all wrong;
    # class 1 (verified): 1 of 3 judged wrong (p = 1/3). Certainties and verdicts chosen by hand.
    label = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    certainty = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.05, 0.35, 0.7])
    verdict = np.array([0, 0, 0, 1, 1, 1, 1, 0, 1])
    # class 0's picks: k=0 the least certain (0, wrong); k=1 the wrong quota ceil(2/2) = 1 is full: 3 (right);
    # k=2 both open: 1 (0.2) before 4 (0.5); k=3 wrong full (2 of ceil(4/2)): 4; k=4: 2; k=5: 5.
    # class 1's picks: 6, then 7 (0.35, wrong; quota ceil(2/3) = 1) before 8.
    # round 0: {0, 3, 1} and {6}, by certainty 6, 0, 1, 3; round 1: {4, 2, 5} and {7}: 2, 7, 4, 5; round 2: 8
    order = select_queue(label, certainty, 9, {1}, verdict=verdict)
    assert order.tolist() == [6, 0, 1, 3, 2, 7, 4, 5, 8]
    # a queue of 4 asks about the judged-right sample 3 instead of the third wrong one (2), which the
    # least-certain-only order takes: 6, 0, 1, 2
    assert select_queue(label, certainty, 4, {1}, verdict=verdict).tolist() == [6, 0, 1, 3]
    assert select_queue(label, certainty, 4, {1}).tolist() == [6, 0, 1, 2]
    # the quota counts every sample of the class, the excluded (verified) ones too: without 0 and 3
    # class 0's eligible picks: 1 (wrong), then the right 4, then 2, then 5
    excluded = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0], bool)
    assert select_queue(label, certainty, 9, {1}, exclude=excluded, verdict=verdict).tolist() == [6, 1, 2, 4, 7, 5, 8]


def test_certainty_is_the_distance_from_the_cut():
    class P:
        similarity = np.array([0.3, 0.05, 0.5])
        margin = np.array([0.2, -0.1, np.nan])

    assert np.allclose(decision_used.certainty(P, ThresholdDecision(0.1)), [0.2, 0.05, 0.4])
    assert np.allclose(decision_used.certainty(P, RelativeDecision(0.05))[:2], [0.15, 0.15])
    assert np.isinf(decision_used.certainty(P, RelativeDecision(0.05))[2])
    # with a threshold too: both hold -> the smaller distance; one fails -> the failing distance
    both = decision_used.certainty(P, RelativeDecision(0.0, threshold=0.25))
    assert np.allclose(both[:2], [0.05, 0.2])


def test_decision_is_recognised_from_the_verdicts(small):
    predictions = read_predictions(small["pred"], class_names(5))
    used = decision_used.find_decision(predictions, 0.1)
    assert isinstance(used.decision, RelativeDecision) and used.disagreements == 0
    assert used.decision.min_margin == pytest.approx(small["margin"][small["margin"] >= 0].min(), abs=1e-6)
    threshold_file = small["tmp"] / "thr.tsv"
    lines = open(small["pred"]).read().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    with open(threshold_file, "w") as f:
        f.write(lines[0] + "\n" + "".join("\t".join(r[:4] + [str(int(float(r[3]) >= 0.1))] + r[5:]) + "\n"
                                          for r in rows))
    used = decision_used.find_decision(read_predictions(str(threshold_file), class_names(5)), 0.1)
    assert used.decision == ThresholdDecision(0.1) and used.disagreements == 0


# ----------------------------------------------------------------------------------- the page


def test_page_states_the_noise_per_class_and_the_queue_follows_the_layout(small):
    out = small["tmp"] / "review"
    result = build_report(ReportConfig(predictions=small["pred"], class_list=small["classes"], output_dir=str(out),
                                       image_list=small["image_list"], image_root=str(small["tmp"] / "images"),
                                       verified_list=small["verified"], queue=20, per_class=200))
    page = open(result.page_path, encoding="utf-8").read()
    for c in range(5):
        mine = small["labels"] == c
        share = 100.0 * np.sum(small["verdict"][mine] == 0) / mine.sum()
        assert re.search(r"<td>class_%03d</td><td class=num>%d</td><td class=num>%d</td><td class=num "
                         r"data-v=\"[0-9.]+\">%.1f%%</td>" % (c, mine.sum(), np.sum(small["verdict"][mine] == 0),
                                                               share), page), c
    assert page.count('class="tag no">none<') == 3  # classes 2, 3, 4: no vlabel 0/1 in the verified list
    # every sample shown (per_class 200): the missing and the undecodable image are placeholders, counted
    assert result.missing_images == 2 and page.count('<div class="ph">no image</div>') >= 2
    assert "2 images missing or unreadable" in page
    assert len(os.listdir(out / "thumbs")) == 198
    queue = [line.split("\t") for line in open(result.queue_path).read().splitlines()]
    assert len(queue) == 20 and all(len(r) == 4 and r[3] == "" for r in queue)
    by_key = {k: (path, "class_%03d" % c) for k, (_, path, _), c in zip(small["keys"], small["rows"], small["labels"])}
    assert all((r[1], r[2]) == by_key[r[0]] for r in queue)
    assert small["keys"][5] not in [r[0] for r in queue]  # in the verified list: not queued again
    # the first in the queue is the least certain sample of all (every class gives its least certain in round 0)
    certainty = np.abs(small["margin"] - small["margin"][small["margin"] >= 0].min())
    certainty[5] = np.inf  # verified already
    assert queue[0][0] == small["keys"][int(np.argmin(certainty))]
    # classes without verification labels (2-4) get UNVERIFIED_PICKS per round, the others 1
    per_class = [sum(r[2] == "class_%03d" % c for r in queue) for c in range(5)]
    assert min(per_class[2:]) > max(per_class[:2]), per_class


def test_without_images_the_samples_are_a_table_of_keys(small):
    result = build_report(ReportConfig(predictions=small["pred"], class_list=small["classes"],
                                       output_dir=str(small["tmp"] / "r"), per_class=3))
    page = open(result.page_path, encoding="utf-8").read()
    assert "<img" not in page and not os.path.exists(small["tmp"] / "r" / "thumbs" / "0.jpg")
    worst = np.argsort(np.where(small["labels"] == 0, small["margin"], np.inf), kind="stable")[:3]
    for i in worst:
        assert "<td>%s</td>" % small["keys"][i] in page
    assert result.shown == 15


# ----------------------------------------------------------------------------------- bad input (CLI)


def report(small, out, *extra):
    return run_cli("util/report.py", "--predictions=" + small["pred"], "--class_list=" + small["classes"],
                   "--output_dir=" + str(out), *extra)


def test_predictions_that_do_not_match_the_class_list_are_refused(small):
    write_class_list(small["tmp"] / "four.txt", 4)
    out = small["tmp"] / "out"
    proc = run_cli("util/report.py", "--predictions=" + small["pred"], "--class_list=" + str(small["tmp"] / "four.txt"),
                   "--output_dir=" + str(out))
    last = proc.stderr.strip().splitlines()[-1]
    assert_one_line_error(proc, "class 'class_004' is not in the class list")
    match = re.match(r"error: (.*):(\d+): (class_name|best_other_class|suggested_class): ", last)
    assert match and match.group(1) == small["pred"], last
    lines = open(small["pred"]).read().splitlines()
    header = lines[0].split("\t")
    named = lines[int(match.group(2)) - 1].split("\t")
    assert named[header.index(match.group(3))] == "class_004"
    assert not any("class_004" in line for line in lines[1:int(match.group(2)) - 1])  # the first such line
    assert not out.exists()


def test_an_image_path_leaving_the_root_is_refused(small):
    rows = list(small["rows"])
    rows[7] = (rows[7][0], "../../etc/passwd", rows[7][2])
    bad_list = write_image_list(small["tmp"] / "bad_list.tsv", rows)
    out = small["tmp"] / "out"
    proc = report(small, out, "--image_list=" + bad_list, "--image_root=" + str(small["tmp"] / "images"))
    assert_one_line_error(proc, bad_list + ":8:", "image_path", "leaves the image root")
    assert not out.exists() and not [n for n in os.listdir(small["tmp"]) if n.startswith(".out")]


def test_an_image_root_that_is_not_a_directory_is_refused(small):
    out = small["tmp"] / "out"
    proc = report(small, out, "--image_list=" + small["image_list"], "--image_root=" + str(small["tmp"] / "nope"))
    assert_one_line_error(proc, "--image_root: not a directory")
    assert not out.exists()


def test_a_non_empty_output_dir_is_refused_unless_overwrite(small):
    out = small["tmp"] / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = report(small, out)
    assert_one_line_error(proc, str(out), "--output_dir", "is not empty", "--overwrite")
    assert os.listdir(out) == ["notes.txt"]
    proc = report(small, out, "--overwrite", "--queue=5", "--image_list=" + small["image_list"],
                  "--image_root=" + str(small["tmp"] / "images"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["index.html", "notes.txt", "owner.json", "queue.tsv", "thumbs"]
    assert (out / "notes.txt").read_text() == "mine"
    (out / "index.html").write_text("stale")  # a second --overwrite replaces the report's own output
    proc = report(small, out, "--overwrite", "--queue=5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stale" not in (out / "index.html").read_text()
    assert sorted(os.listdir(out)) == ["index.html", "notes.txt", "owner.json", "queue.tsv"]


def test_overwrite_never_replaces_entries_no_marker_proves_the_report_wrote(small):
    """A folder the user made with a thumbs/ of their own: --overwrite refuses, lists it, keeps it."""
    out = small["tmp"] / "out"
    (out / "thumbs").mkdir(parents=True)
    (out / "thumbs" / "mine.jpg").write_text("mine")
    proc = report(small, out, "--overwrite")
    assert_one_line_error(proc, str(out), "thumbs", "owner.json")
    assert sorted(os.listdir(out)) == ["thumbs"]
    assert (out / "thumbs" / "mine.jpg").read_text() == "mine"


def test_missing_and_unreadable_images_are_placeholders_not_a_crash(small):
    out = small["tmp"] / "out"
    proc = report(small, out, "--image_list=" + small["image_list"], "--image_root=" + str(small["tmp"] / "images"),
                  "--per_class=100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 images missing or unreadable" in proc.stdout


# ----------------------------------------------------------------------------------- merge


@pytest.fixture
def merge_inputs(tmp_path):
    all_tsv = tmp_path / "all.tsv"
    all_tsv.write_text("a\tu/a.jpg\tcat\t1,2\nb\tu/b.jpg\tdog\t3,4\nc\tu/c.jpg\tcat\t5,6\n")
    train = tmp_path / "train.tsv"
    train.write_text("v\tu/v.jpg\tcat\t1\t0,0\n")
    return tmp_path, str(all_tsv), str(train)


def merge(queue, all_tsv, out, *extra):
    return run_cli("util/merge_queue.py", "--queue=" + str(queue), "--image_feature_list=" + all_tsv,
                   "--output_file=" + str(out), *extra)


def test_merge_appends_the_filled_rows_with_their_features(merge_inputs):
    tmp, all_tsv, train = merge_inputs
    queue = tmp / "queue.tsv"
    queue.write_text("c\tu/c.jpg\tcat\t0\nb\tu/b.jpg\tdog\t1\na\tu/a.jpg\tcat\t\n")
    out = tmp / "merged.tsv"
    proc = merge(queue, all_tsv, out, "--verified_tsv=" + train, "--skip_unfilled")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_text() == "v\tu/v.jpg\tcat\t1\t0,0\nc\tu/c.jpg\tcat\t0\t5,6\nb\tu/b.jpg\tdog\t1\t3,4\n"
    proc = merge(queue, all_tsv, out, "--verified_tsv=" + train, "--skip_unfilled")
    assert_one_line_error(proc, "--output_file", "exists; pass --overwrite")


@pytest.mark.parametrize("case, text, parts", [
    ("bad_vlabel", "a\tu/a.jpg\tcat\t1\nb\tu/b.jpg\tdog\tyes\n", [":2:", "vlabel", "expected 1 (label correct), 0"]),
    ("duplicate_key", "a\tu/a.jpg\tcat\t1\na\tu/a.jpg\tcat\t0\n", [":2:", "key", "duplicate key 'a'"]),
    ("unfilled", "a\tu/a.jpg\tcat\t1\nb\tu/b.jpg\tdog\t\n", [":2:", "vlabel", "not filled", "--skip_unfilled"]),
    ("unknown_key", "a\tu/a.jpg\tcat\t1\nzz\tu/z.jpg\tdog\t0\n", [":2:", "key", "unknown key 'zz'"]),
    ("other_class", "b\tu/b.jpg\tcat\t1\n", [":1:", "class_name", "class 'cat' here but 'dog'"]),
    ("already_verified", "v\tu/v.jpg\tcat\t1\n", [":1:", "key", "already verified"]),
])
def test_merge_refuses_bad_queues(merge_inputs, case, text, parts):
    tmp, all_tsv, train = merge_inputs
    queue = tmp / "queue.tsv"
    queue.write_text(text)
    out = tmp / "merged.tsv"
    proc = merge(queue, all_tsv, out, "--verified_tsv=" + train)
    assert_one_line_error(proc, str(queue), *parts)
    assert not out.exists() and sorted(os.listdir(tmp)) == ["all.tsv", "queue.tsv", "train.tsv"]


def test_merge_never_writes_over_an_input(merge_inputs):
    tmp, all_tsv, train = merge_inputs
    queue = tmp / "queue.tsv"
    queue.write_text("a\tu/a.jpg\tcat\t1\n")
    before = open(train).read()
    proc = merge(queue, all_tsv, train, "--verified_tsv=" + train, "--overwrite")
    assert_one_line_error(proc, "--output_file", "destroy that input")
    assert open(train).read() == before


def test_a_class_of_the_predictions_missing_from_the_class_list_names_the_line(tmp_path):
    pred = tmp_path / "p.tsv"
    pred.write_text("key\turl\tclass_name\tsimilarity\tverdict\nk1\t\tclass_000\t0.5\t1\nk2\t\tclass_009\t0.5\t1\n")
    with pytest.raises(InputError, match=r"p.tsv:3: class_name: class 'class_009' is not in the class list"):
        read_predictions(str(pred), class_names(3))


def test_jsonl_predictions_read_as_the_tsv(small):
    import json

    lines = open(small["pred"]).read().splitlines()
    header = lines[0].split("\t")
    jsonl = small["tmp"] / "pred.jsonl"
    with open(jsonl, "w") as f:
        for line in lines[1:]:
            record = dict(zip(header, line.split("\t")))
            for name in ("similarity", "best_other_similarity", "margin"):
                record[name] = float(record[name])
            record["verdict"] = int(record["verdict"])
            for name in ("url", "suggested_class"):
                record[name] = record[name] or None
            f.write(json.dumps(record) + "\n")
    from_tsv = read_predictions(small["pred"], class_names(5))
    from_jsonl = read_predictions(str(jsonl), class_names(5))
    assert from_jsonl.keys == small["keys"] and np.array_equal(from_jsonl.label, small["labels"])
    np.testing.assert_allclose(from_jsonl.margin, small["margin"], atol=1e-6)
    for name in ("similarity", "verdict", "best_other", "suggested"):
        assert np.array_equal(getattr(from_jsonl, name), getattr(from_tsv, name)), name
