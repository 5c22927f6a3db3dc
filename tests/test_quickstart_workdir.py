"""The quickstart's work directory: settings recorded, a stale model never reused, and only
its own files deleted (cleannet.quickstart.prepare_work_dir)."""

import json

import pytest

from cleannet.quickstart import LOCK_FILE, LOG_FILE, SETTINGS_FILE, hold_work_dir, prepare_work_dir
from noisylabels.errors import InputError

SETTINGS = dict(noise_rate=0.3, n_step=3000, num_ref=8, seed=0)


def fill_like_a_run(work_dir):
    """What a quickstart run leaves: a model under train/, predictions, its log."""
    (work_dir / "train" / "checkpoints").mkdir(parents=True)
    (work_dir / "train" / "checkpoints" / "ckpt-3000.index").write_text("model")
    (work_dir / "test_predictions.tsv").write_text("old")
    (work_dir / LOG_FILE).write_text("log")


def test_same_settings_reuse_the_model(tmp_path):
    assert prepare_work_dir(str(tmp_path), SETTINGS) == "new"
    marker = json.load(open(tmp_path / SETTINGS_FILE))
    assert marker == {"tool": "cleannet.quickstart", "format_version": 1, "settings": SETTINGS}
    fill_like_a_run(tmp_path)
    assert prepare_work_dir(str(tmp_path), dict(SETTINGS)) == "reuse"
    assert (tmp_path / "train" / "checkpoints" / "ckpt-3000.index").exists()


def test_other_settings_start_afresh_deleting_only_the_quickstarts_files(tmp_path):
    prepare_work_dir(str(tmp_path), SETTINGS)
    fill_like_a_run(tmp_path)
    (tmp_path / "my_notes.txt").write_text("keep me")
    (tmp_path / "my_dir").mkdir()
    assert prepare_work_dir(str(tmp_path), dict(SETTINGS, n_step=500)) == "fresh"
    assert not (tmp_path / "train").exists()
    assert not (tmp_path / "test_predictions.tsv").exists()
    assert (tmp_path / "my_notes.txt").read_text() == "keep me"
    assert (tmp_path / "my_dir").is_dir()
    assert json.load(open(tmp_path / SETTINGS_FILE))["settings"]["n_step"] == 500


def user_files(work_dir):
    (work_dir / "data").mkdir()
    (work_dir / "data" / "mine.npy").write_text("someone else's")
    (work_dir / "train").mkdir()
    (work_dir / "train" / "notes.txt").write_text("someone else's")
    return {"data/mine.npy", "train/notes.txt"}


def files_under(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_files_not_made_by_a_quickstart_are_refused(tmp_path):
    user_files(tmp_path)
    with pytest.raises(InputError) as err:
        prepare_work_dir(str(tmp_path), SETTINGS)
    assert str(err.value).startswith("%s: --work_dir: holds data, train, but no %s" % (tmp_path, SETTINGS_FILE))
    assert files_under(tmp_path) == {"data/mine.npy", "train/notes.txt"}


def test_an_empty_quickstart_log_is_no_proof(tmp_path):
    """Issue 17: `python -m cleannet.quickstart --work_dir=. | tee quickstart.log` leaves an empty
    log before the quickstart starts; it was taken as proof and the user's data/ and train/ deleted."""
    expected = user_files(tmp_path) | {LOG_FILE}
    (tmp_path / LOG_FILE).write_text("")
    with pytest.raises(InputError, match="nothing was deleted"):
        prepare_work_dir(str(tmp_path), SETTINGS)
    assert files_under(tmp_path) == expected


@pytest.mark.parametrize("marker", ["", '{"tool": "cleannet.quick', json.dumps(SETTINGS),
                                    json.dumps({"tool": "other", "format_version": 1, "settings": SETTINGS})],
                         ids=["empty", "truncated", "settings_without_tool", "another_tools_marker"])
def test_a_marker_that_proves_nothing_is_one_line_and_deletes_nothing(tmp_path, marker):
    expected = user_files(tmp_path) | {SETTINGS_FILE}
    (tmp_path / SETTINGS_FILE).write_text(marker)
    with pytest.raises(InputError) as err:
        prepare_work_dir(str(tmp_path), dict(SETTINGS, n_step=1))
    assert str(err.value).startswith("%s: " % (tmp_path / SETTINGS_FILE)) and "\n" not in str(err.value)
    assert files_under(tmp_path) == expected
    assert (tmp_path / SETTINGS_FILE).read_text() == marker


def test_one_quickstart_per_work_dir(tmp_path):
    first = hold_work_dir(str(tmp_path))
    try:
        with pytest.raises(InputError) as err:
            hold_work_dir(str(tmp_path))
        assert str(err.value).startswith("%s: is held by another run (pid " % (tmp_path / LOCK_FILE))
    finally:
        first.release(remove=True)
    assert not (tmp_path / LOCK_FILE).exists()
