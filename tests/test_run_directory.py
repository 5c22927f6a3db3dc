"""The shared run directory: ownership, lock, run record, damaged checkpoints, finite saves."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from noisylabels.errors import InputError, TrainingError
from noisylabels.run_directory import RunDirectory
from noisylabels.run_record import file_identity, make_record


class Tiny(tf.Module):
    def __init__(self, value=1.0):
        super().__init__()
        self.weight = tf.Variable(np.full([3], value, np.float32), name="weight")

    @property
    def variables(self):
        return [self.weight]


def make_run(directory, value=1.0, **kwargs):
    model = Tiny(value)
    checkpoint = tf.train.Checkpoint(model=model)
    return model, RunDirectory(str(directory), checkpoint, **kwargs)


def test_saves_restores_and_keeps_the_best_copy(tmp_path):
    model, run = make_run(tmp_path / "run", keep_best=True)
    with run:
        run.save(1)
        model.weight.assign([2.0, 2.0, 2.0])
        run.save_best(2, {"val_acc": 0.5})
        run.save(2)
        model.weight.assign([9.0, 9.0, 9.0])
    assert run.best_info() == {"val_acc": 0.5, "step": 2}
    model2, run2 = make_run(tmp_path / "run")
    with run2:
        path = run2.restore_latest(lambda p: run2.checkpoint.restore(p).assert_existing_objects_matched())
    assert path.endswith("ckpt-2")
    np.testing.assert_array_equal(model2.weight.numpy(), [2.0, 2.0, 2.0])


def test_a_state_file_naming_a_checkpoint_elsewhere_is_refused_and_nothing_is_deleted(tmp_path):
    other = tmp_path / "other"
    _, victim = make_run(other)
    with victim:
        victim.save(1)
        victim.save(2)
    before = sorted(os.listdir(other))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint").write_text('model_checkpoint_path: "../other/ckpt-2"\n'
                                        'all_model_checkpoint_paths: "../other/ckpt-1"\n'
                                        'all_model_checkpoint_paths: "../other/ckpt-2"\n')
    _, run = make_run(run_dir, max_to_keep=1)
    with pytest.raises(InputError) as err:
        with run:
            pass
    assert "outside its directory" in str(err.value) and "../other/ckpt-2" in str(err.value)
    assert str(err.value).startswith(str(run_dir / "checkpoint") + ": ")
    assert sorted(os.listdir(other)) == before


def test_absolute_state_path_outside_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint").write_text('model_checkpoint_path: "/etc/ckpt-1"\n')
    _, run = make_run(run_dir)
    with pytest.raises(InputError, match="outside its directory"):
        with run:
            pass


def test_a_second_run_on_the_same_directory_is_refused_with_the_holder(tmp_path):
    _, first = make_run(tmp_path / "run")
    with first:
        code = ("import sys; sys.path.insert(0, %r)\n"
                "import tensorflow as tf\n"
                "from noisylabels.run_directory import RunDirectory\n"
                "from noisylabels.errors import InputError\n"
                "try:\n"
                "    with RunDirectory(%r, tf.train.Checkpoint()):\n"
                "        print('entered')\n"
                "except InputError as err:\n"
                "    print('refused:', err)\n") % (os.getcwd(), str(tmp_path / "run"))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "refused:" in out and "in use by another run" in out and "pid %d" % os.getpid() in out, out
    _, again = make_run(tmp_path / "run")  # released: a later run enters
    with again:
        pass


def test_resume_falls_back_from_a_truncated_latest_checkpoint(tmp_path):
    model, run = make_run(tmp_path / "run")
    with run:
        run.save(1)
        model.weight.assign([5.0, 5.0, 5.0])
        latest = run.save(2)
    data_file = [name for name in os.listdir(tmp_path / "run") if name.startswith("ckpt-2.data")][0]
    with open(tmp_path / "run" / data_file, "r+b") as f:
        f.truncate(4)
    model2, run2 = make_run(tmp_path / "run", value=0.0)
    with run2:
        path = run2.restore_latest(lambda p: run2.checkpoint.restore(p).assert_existing_objects_matched())
    assert path.endswith("ckpt-1") and latest.endswith("ckpt-2")
    np.testing.assert_array_equal(model2.weight.numpy(), [1.0, 1.0, 1.0])


def test_resume_refuses_when_no_checkpoint_loads(tmp_path):
    _, run = make_run(tmp_path / "run")
    with run:
        run.save(1)
    for name in os.listdir(tmp_path / "run"):
        if name.startswith("ckpt-1.data"):
            (tmp_path / "run" / name).write_bytes(b"")
    _, run2 = make_run(tmp_path / "run")
    with run2:
        with pytest.raises(InputError, match="no checkpoint here can be read"):
            run2.restore_latest(lambda p: run2.checkpoint.restore(p).assert_existing_objects_matched())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_never_saved(tmp_path, bad):
    model, run = make_run(tmp_path / "run", keep_best=True)
    with run:
        good = run.save(1)
        model.weight.assign([1.0, bad, 1.0])
        with pytest.raises(TrainingError) as err:
            run.save(2)
        with pytest.raises(TrainingError):
            run.save_best(2, {"val_acc": 1.0})
    assert "NaN or infinity at step 2" in str(err.value) and good in str(err.value)
    assert not any(name.startswith("ckpt-2") for name in os.listdir(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "best" / "checkpoint")


def test_record_refuses_other_data_or_settings_and_says_how_to_start_afresh(tmp_path):
    data = tmp_path / "train.npy"
    np.save(data, np.zeros([4, 3], np.float32))
    record = make_record({"train.npy": str(data)}, {"num_ref": 8})
    _, run = make_run(tmp_path / "run")
    with run:
        run.check_record(record)
        run.save(1)
    with run:
        run.check_record(record)  # the same data and settings resume
    np.save(data, np.ones([4, 3], np.float32))  # same size, other content
    with run:
        with pytest.raises(InputError) as err:
            run.check_record(make_record({"train.npy": str(data)}, {"num_ref": 8}))
        assert "train.npy changed" in str(err.value) and "new directory" in str(err.value)
        with pytest.raises(InputError, match="--num_ref 8 -> 16"):
            run.check_record(make_record({"train.npy": str(data)}, {"num_ref": 16}))
    with open(tmp_path / "run" / "run.json") as f:
        assert json.load(f) == json.loads(json.dumps(record))


def test_file_identity_sees_a_change_at_either_end_of_a_large_file(tmp_path):
    path = tmp_path / "big.bin"
    payload = bytearray(os.urandom(3 << 20))
    path.write_bytes(bytes(payload))
    original = file_identity(str(path))
    payload[-1] ^= 0xFF
    path.write_bytes(bytes(payload))
    assert file_identity(str(path)) != original
    assert original["size"] == 3 << 20


def test_interrupted_save_directories_are_removed(tmp_path):
    (tmp_path / "run" / "ckpt-7_temp").mkdir(parents=True)
    (tmp_path / "run" / "best" / "ckpt-7_temp").mkdir(parents=True)
    (tmp_path / "run" / "keep_temp").mkdir()
    _, run = make_run(tmp_path / "run", keep_best=True)
    with run:
        pass
    assert sorted(os.listdir(tmp_path / "run")) == ["best", "keep_temp", "run.lock"]


def test_a_log_dir_that_is_a_file_is_one_line(tmp_path):
    from noisylabels.training_loop import summary_writers

    (tmp_path / "logs").write_text("not a directory")
    with pytest.raises(InputError) as err:
        summary_writers(str(tmp_path / "logs"), ("train", "val"), chief=True)
    message = str(err.value)
    assert message.startswith(str(tmp_path / "logs" / "train") + ": --log_dir: cannot write TensorBoard logs here")
    assert "not a directory" in message and "{{" not in message and "Op:" not in message, message


def test_a_failed_checkpoint_write_is_one_line_naming_the_last_good_one(tmp_path, monkeypatch):
    _, run = make_run(tmp_path / "run")
    with run:
        good = run.save(1)

        def disk_full(*args, **kwargs):
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

        monkeypatch.setattr(run.manager, "save", disk_full)
        with pytest.raises(InputError) as err:
            run.save(2)
    assert str(err.value) == ("%s: cannot write the checkpoint of step 2 (No space left on device); the last good "
                              "checkpoint is %s" % (tmp_path / "run", good))
