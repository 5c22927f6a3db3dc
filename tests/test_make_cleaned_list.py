"""util/make_cleaned_list.py against hand-computed cleaned lists and summaries."""

import json
import os
import subprocess
import sys

import pytest

from noisylabels.errors import InputError
from cleannet.tools.make_cleaned_list import make_cleaned_list

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LIST = ("a1\tcat/1.jpg\tcat\n"
        "a2\tcat/2.jpg\tcat\n"
        "\n"
        "b1\tdog/1.jpg\tdog\n"
        "b2\tdog/2.jpg\tdog\n"
        "b3\tdog/3.jpg\tdog\n")
# key -> (class, similarity, verdict); the verdicts are not similarity >= 0.1 everywhere on
# purpose (a2: 0.3 but 0; b3: 0.05 but 1): the tool must follow the verdict column.
PREDICTIONS = {"a1": ("cat", "0.5", "1"), "a2": ("cat", "0.3", "0"), "b1": ("dog", "-0.25", "0"),
               "b2": ("dog", "0.75", "1"), "b3": ("dog", "0.05", "1")}


def write_tsv_predictions(path, order=("b2", "a1", "b3", "a2", "b1")):
    """inference.py-like TSV with extra columns and the used ones in another order."""
    lines = ["margin\tkey\tverdict\turl\tsimilarity\tclass_name\tsuggested_class"]
    for key in order:
        name, sim, verdict = PREDICTIONS[key]
        lines.append("0.1\t%s\t%s\t\t%s\t%s\tother" % (key, verdict, sim, name))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    image_list = tmp_path / "list.tsv"
    image_list.write_text(LIST)
    return image_list, write_tsv_predictions(tmp_path / "pred.tsv"), tmp_path


def test_hard_keeps_verdict_one_rows_in_list_order(files):
    image_list, predictions, tmp = files
    counts = make_cleaned_list(str(image_list), str(predictions), str(tmp / "clean.tsv"), keep="hard")
    assert (tmp / "clean.tsv").read_text() == "a1\tcat/1.jpg\tcat\nb2\tdog/2.jpg\tdog\nb3\tdog/3.jpg\tdog\n"
    assert counts == {"cat": (1, 1), "dog": (2, 1)}
    assert (tmp / "clean.tsv.summary.tsv").read_text() == "class_name\tkept\tdropped\ncat\t1\t1\ndog\t2\t1\n"


def test_soft_writes_every_row_with_clipped_weight(files):
    image_list, predictions, tmp = files
    counts = make_cleaned_list(str(image_list), str(predictions), str(tmp / "soft.tsv"), keep="soft",
                               summary_file=str(tmp / "s.tsv"))
    assert (tmp / "soft.tsv").read_text() == ("a1\tcat/1.jpg\tcat\t0.5\n" "a2\tcat/2.jpg\tcat\t0.3\n"
                                              "b1\tdog/1.jpg\tdog\t0\n" "b2\tdog/2.jpg\tdog\t0.75\n"
                                              "b3\tdog/3.jpg\tdog\t0.05\n")
    assert counts == {"cat": (2, 0), "dog": (2, 1)}  # b1 has weight 0
    assert (tmp / "s.tsv").read_text() == "class_name\tkept\tdropped\ncat\t2\t0\ndog\t2\t1\n"


def test_jsonl_predictions_and_vlabel_column(tmp_path):
    image_list = tmp_path / "verified.tsv"
    image_list.write_text("".join("%s\tx/%s.jpg\t%s\t1\n" % (k, k, PREDICTIONS[k][0]) for k in ("a1", "a2", "b1")))
    predictions = tmp_path / "pred.jsonl"
    predictions.write_text("".join(json.dumps({"key": k, "url": None, "class_name": PREDICTIONS[k][0],
                                               "similarity": float(PREDICTIONS[k][1]),
                                               "verdict": int(PREDICTIONS[k][2]), "margin": 0.2}) + "\n"
                                   for k in ("b1", "a2", "a1")))
    make_cleaned_list(str(image_list), str(predictions), str(tmp_path / "out.tsv"), keep="hard")
    assert (tmp_path / "out.tsv").read_text() == "a1\tx/a1.jpg\tcat\t1\n"


@pytest.mark.parametrize("edit, where, words", [
    (lambda lst, pred: pred.write_text(pred.read_text() + "0\ta1\t1\t\t0.5\tcat\tx\n"), "pred.tsv:7", "duplicate key 'a1'"),
    (lambda lst, pred: write_tsv_predictions(pred, order=("a1", "a2", "b1", "b2")), "list.tsv:6", "no prediction for key 'b3'"),
    (lambda lst, pred: lst.write_text(LIST.replace("b3\tdog/3.jpg\tdog\n", "")), "pred.tsv:4", "no row in"),
    (lambda lst, pred: lst.write_text(LIST.replace("b2\tdog/2.jpg\tdog", "b2\tdog/2.jpg\tcat")), "list.tsv:5",
     "class 'cat' here but 'dog'"),
    (lambda lst, pred: lst.write_text(LIST + "a1\tcat/9.jpg\tcat\n"), "list.tsv:7", "duplicate key 'a1' (first on line 1)"),
    (lambda lst, pred: pred.write_text("0.5\n0.3\n"), "pred.tsv:1", "header has no column key"),
    (lambda lst, pred: pred.write_text(pred.read_text().replace("\t0.75\t", "\tnan\t")), "pred.tsv:2", "similarity"),
], ids=["duplicate_prediction", "missing_prediction", "prediction_without_row", "class_mismatch",
        "duplicate_list_key", "plain_output", "nan_similarity"])
def test_bad_input_names_file_and_line_and_writes_nothing(files, edit, where, words):
    image_list, predictions, tmp = files
    edit(image_list, predictions)
    with pytest.raises(InputError) as err:
        make_cleaned_list(str(image_list), str(predictions), str(tmp / "out.tsv"))
    assert where in str(err.value) and words in str(err.value), str(err.value)
    assert not (tmp / "out.tsv").exists() and not (tmp / "out.tsv.summary.tsv").exists()


def test_refuses_to_overwrite_inputs_and_existing_outputs(files):
    image_list, predictions, tmp = files
    before = image_list.read_text()
    with pytest.raises(InputError, match="--output_file: is also --image_list"):
        make_cleaned_list(str(image_list), str(predictions), str(image_list))
    with pytest.raises(InputError, match="--summary_file: is also --predictions"):
        make_cleaned_list(str(image_list), str(predictions), str(tmp / "o.tsv"), summary_file=str(predictions))
    assert image_list.read_text() == before
    (tmp / "o.tsv").write_text("mine")
    with pytest.raises(InputError, match="--overwrite"):
        make_cleaned_list(str(image_list), str(predictions), str(tmp / "o.tsv"))
    make_cleaned_list(str(image_list), str(predictions), str(tmp / "o.tsv"), overwrite=True)
    assert (tmp / "o.tsv").read_text().startswith("a1\t")


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_an_output_reaching_an_input_through_a_link_is_refused(files, link):
    """Issue 17: the same-file check also sees hard links (same device and inode)."""
    image_list, predictions, tmp = files
    before = predictions.read_bytes()
    (os.symlink if link == "symlink" else os.link)(predictions, tmp / "alias.tsv")
    with pytest.raises(InputError, match="--summary_file: is also --predictions"):
        make_cleaned_list(str(image_list), str(predictions), str(tmp / "o.tsv"), summary_file=str(tmp / "alias.tsv"),
                          overwrite=True)
    assert predictions.read_bytes() == before and not (tmp / "o.tsv").exists()


def test_a_prediction_line_longer_than_the_shared_bound_is_refused_unread(files):
    from noisylabels.fileio import MAX_TEXT_LINE_BYTES

    image_list, predictions, tmp = files
    lines = predictions.read_text().count("\n")
    with open(predictions, "a") as f:
        f.write("x" * (MAX_TEXT_LINE_BYTES + 1) + "\n")
    with pytest.raises(InputError) as err:
        make_cleaned_list(str(image_list), str(predictions), str(tmp / "o.tsv"))
    assert str(err.value) == ("%s:%d: --predictions: line longer than %d bytes, more than a valid line can be"
                              % (predictions, lines + 1, MAX_TEXT_LINE_BYTES))


def test_cli_prints_summary_and_exits_2_on_bad_input(files):
    image_list, predictions, tmp = files
    args = [sys.executable, "util/make_cleaned_list.py", "--image_list=%s" % image_list,
            "--predictions=%s" % predictions, "--output_file=%s" % (tmp / "c.tsv")]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [line.split() for line in result.stdout.splitlines()[1:]] == [
        ["cat", "1", "1"], ["dog", "2", "1"], ["total", "3", "2"]]
    image_list.write_text(LIST + "z9\tdog/9.jpg\tdog\n")
    result = subprocess.run(args[:-1] + ["--output_file=%s" % (tmp / "d.tsv")], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: %s:7: key: no prediction for key 'z9' in %s"
                                                  % (image_list, predictions)]
    assert not (tmp / "d.tsv").exists()



@pytest.mark.parametrize("keep, with_predictions, expected", [
    ("--keep=medium", True, "flag --keep=medium: value should be one of <hard|soft>"),
    ("--keep=hard", False, "flag --predictions=None: Flag --predictions must have a value other than None."),
])
def test_cli_flag_errors_are_one_line(files, keep, with_predictions, expected):
    """--keep is an absl enum and --predictions a required flag: one stderr line, exit 2, nothing written."""
    image_list, predictions, tmp = files
    args = [sys.executable, "util/make_cleaned_list.py", "--image_list=%s" % image_list, keep,
            "--output_file=%s" % (tmp / "c.tsv")] + (["--predictions=%s" % predictions] if with_predictions else [])
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: " + expected]
    assert not (tmp / "c.tsv").exists()
