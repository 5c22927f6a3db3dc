"""The quickstart's work directory: settings recorded, a stale model never reused, and only
its own files deleted (cleannet.quickstart.prepare_work_dir)."""

import json

import pytest

from cleannet.quickstart import LOG_FILE, SETTINGS_FILE, prepare_work_dir

SETTINGS = dict(noise_rate=0.3, n_step=3000, num_ref=8, seed=0)


def fill_like_a_run(work_dir):
    """What a quickstart run leaves: a model under train/, predictions, its log."""
    (work_dir / "train" / "checkpoints").mkdir(parents=True)
    (work_dir / "train" / "checkpoints" / "ckpt-3000.index").write_text("model")
    (work_dir / "test_predictions.tsv").write_text("old")
    (work_dir / LOG_FILE).write_text("log")


def test_same_settings_reuse_the_model(tmp_path):
    assert prepare_work_dir(str(tmp_path), SETTINGS) == "new"
    assert json.load(open(tmp_path / SETTINGS_FILE)) == SETTINGS
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
    assert json.load(open(tmp_path / SETTINGS_FILE))["n_step"] == 500


def test_run_of_an_earlier_version_without_settings_starts_afresh(tmp_path):
    fill_like_a_run(tmp_path)  # an earlier quickstart: its log, no settings file
    assert prepare_work_dir(str(tmp_path), SETTINGS) == "fresh"
    assert not (tmp_path / "train").exists()


def test_files_not_made_by_a_quickstart_are_refused(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.npy").write_text("someone else's")
    with pytest.raises(SystemExit) as exit_info:
        prepare_work_dir(str(tmp_path), SETTINGS)
    assert exit_info.value.code == 2
    assert "not recorded as the quickstart's" in capsys.readouterr().err
    assert (tmp_path / "data" / "mine.npy").exists()
    assert not (tmp_path / SETTINGS_FILE).exists()
