"""Issue 17: a tool's state files (run records, calibration.json, stage.json, final.json,
best_model.json, prepared metadata.json) that are empty, truncated or not what the tool wrote
are one line naming the file and what to do, never a traceback; ownership is proven by a
marker's content, and deletion needs that proof (noisylabels/state_files.py)."""

import json
import os

import pytest

from noisylabels.errors import InputError
from noisylabels.state_files import (Owned, decode_marker, delete_owned, encode_marker, read_json_state,
                                     read_marker, write_marker)

DAMAGED = [(b"", "empty state file"), (b'{"a": 1', "damaged state file, not JSON"), (b"\xff\xfe", "not JSON"),
           (b"[1, 2]", "a JSON list, not the object"), (b"null", "a JSON NoneType")]
IDS = ["empty", "truncated", "not_utf8", "a_list", "null"]


def one_line(err, path):
    text = str(err)
    assert text.startswith("%s: " % path) and "\n" not in text, text
    return text


@pytest.mark.parametrize("content, words", DAMAGED, ids=IDS)
def test_damaged_state_file_is_one_line_with_the_remedy(tmp_path, content, words):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_json_state(str(path), "run the tool again")
    text = one_line(err.value, path)
    assert words in text and text.endswith("; run the tool again")


def test_a_valid_state_file_reads_back(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"x": [1, 2.5], "y": "z"}')
    assert read_json_state(str(path), "-") == {"x": [1, 2.5], "y": "z"}


def test_marker_round_trip_and_what_proves_nothing(tmp_path):
    path = str(tmp_path / "owner.json")
    assert read_marker(path, "tool_a", "-") is None  # no marker: no proof, no error
    write_marker(path, "tool_a", {"n": 3})
    assert json.load(open(path)) == {"tool": "tool_a", "format_version": 1, "settings": {"n": 3}}
    assert read_marker(path, "tool_a", "-") == Owned("tool_a", {"n": 3}, path)
    with pytest.raises(InputError, match="not a marker written by tool_b"):
        read_marker(path, "tool_b", "-")
    assert decode_marker(encode_marker("tool_a", {}), "tool_a", "x") == Owned("tool_a", {}, "x")
    assert decode_marker('{"tool": "tool_a", "format_version": 2, "settings": {}}', "tool_a", "x") is None
    assert decode_marker('{"tool": "tool_a", "format_version": 1}', "tool_a", "x") is None


def test_deletion_needs_a_proof(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "g").write_text("y")
    with pytest.raises(TypeError):
        delete_owned([str(tmp_path / "g")], True)
    assert (tmp_path / "g").exists()
    delete_owned([str(tmp_path / "d"), str(tmp_path / "g"), str(tmp_path / "missing")],
                 Owned("t", {}, str(tmp_path / "m")))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("content, words", DAMAGED[:2], ids=IDS[:2])
def test_run_record(tmp_path, content, words):
    from noisylabels.run_record import RECORD_FILE, check_record

    (tmp_path / RECORD_FILE).write_bytes(content)
    with pytest.raises(InputError) as err:
        check_record(str(tmp_path), {"data": {}, "settings": {}}, resuming=True)
    assert words in one_line(err.value, tmp_path / RECORD_FILE)
    assert (tmp_path / RECORD_FILE).read_bytes() == content


@pytest.mark.parametrize("content, words", DAMAGED[:2], ids=IDS[:2])
def test_calibration_json(tmp_path, content, words):
    from cleannet.calibration import CALIBRATION_FILE, read_calibration

    (tmp_path / CALIBRATION_FILE).write_bytes(content)
    with pytest.raises(InputError) as err:
        read_calibration(str(tmp_path), "ckpt-5", "reference", "inference.py --mode=calibrate")
    text = one_line(err.value, tmp_path / CALIBRATION_FILE)
    assert words in text and text.endswith("run inference.py --mode=calibrate")


@pytest.mark.parametrize("content, words", DAMAGED[:2], ids=IDS[:2])
def test_stage_json_and_final_json(tmp_path, content, words):
    from noise_model.training import stage_files

    (tmp_path / stage_files.STAGE_INFO_FILE).write_bytes(content)
    with pytest.raises(InputError) as err:
        stage_files.read_stage_info(str(tmp_path))
    assert words in one_line(err.value, "%s: --train_dir" % (tmp_path / stage_files.STAGE_INFO_FILE))
    (tmp_path / stage_files.FINAL_FILE).write_bytes(content)
    with pytest.raises(InputError) as err:  # was None: a damaged final.json read as "not finished"
        stage_files.read_final(str(tmp_path))
    assert words in one_line(err.value, tmp_path / stage_files.FINAL_FILE)


@pytest.mark.parametrize("content, words", DAMAGED[:2], ids=IDS[:2])
def test_prepared_metadata_json(tmp_path, content, words):
    from noise_model.data import datasets

    (tmp_path / datasets.METADATA_FILE).write_bytes(content)
    with pytest.raises(InputError) as err:
        datasets.read_metadata(str(tmp_path))
    assert words in one_line(err.value, tmp_path / datasets.METADATA_FILE)


def test_best_model_json(tmp_path):
    import tensorflow as tf

    from noisylabels.run_directory import BEST_INFO_FILE, BEST_SUBDIR, RunDirectory

    run = RunDirectory(str(tmp_path), tf.train.Checkpoint(v=tf.Variable(1.0)))
    assert run.best_info() is None
    (tmp_path / BEST_SUBDIR).mkdir()
    (tmp_path / BEST_SUBDIR / BEST_INFO_FILE).write_text('{"val_acc": 0.9')
    with pytest.raises(InputError) as err:  # was None: a damaged record let a worse model replace the best
        run.best_info()
    assert "not JSON" in one_line(err.value, tmp_path / BEST_SUBDIR / BEST_INFO_FILE)


def test_file_lock_refuses_a_second_holder_and_never_truncates_a_users_file(tmp_path):
    from noisylabels.run_record import FileLock

    lock_path = tmp_path / "out.lock"
    with FileLock(str(lock_path), remove_on_release=True):
        assert lock_path.read_text().startswith("pid %d on " % os.getpid())
        with pytest.raises(InputError, match=r"out.lock: is held by another run \(pid %d on " % os.getpid()):
            FileLock(str(lock_path)).acquire()
    assert not lock_path.exists()  # removed by its holder at the end
    lock_path.write_text("a user's notes")
    with pytest.raises(InputError, match="is not a lock file of these tools"):
        FileLock(str(lock_path)).acquire()
    assert lock_path.read_text() == "a user's notes"
    lock_path.write_text("pid 1 on otherhost\n")  # a lock a dead run left: taken over
    with FileLock(str(lock_path)):
        assert lock_path.read_text().startswith("pid %d on " % os.getpid())
    assert lock_path.exists()  # kept: remove_on_release was not asked for
