"""Faults on outputs and stops by signal (docs/errors.md, "Outputs and signals").

Every OSError on an output is one line naming the path, exit 2, and no temporary file;
SIGTERM and SIGINT remove the temporary files (util/fileio.py) and a rerun works. The
signal cases feed the tool through a named pipe, so it is stopped at a known point: while
it waits for more input with its temporary output (and scratch file) open. (Python runs a
signal handler between bytecodes: a tool blocked in a read of a pipe that delivers no more
data handles the signal once the read returns, here when the pipe is closed.)
"""

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from noisylabels import fileio
from cleannet.tools.convert_data import convert
from noisylabels.errors import InputError, cli_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
CLASSES = "apple\nbanana\n"
ROWS = "".join("k%d\t%s\t%d.5,2,3\n" % (i, ("apple", "banana")[i % 2], i) for i in range(6))


def _interruptible():
    """In the child: SIGINT back to its default. A process started with SIGINT ignored (as an
    earlier library in the test process may have left it, and as `cmd &` does) keeps it
    ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def convert_cli(args, **kwargs):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "util", "convert_data.py")] + args, cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible, **kwargs)


def convert_args(tmp_path, data_path, output_dir, split="all"):
    classes = tmp_path / "classes.txt"
    classes.write_text(CLASSES)
    return ["--split=" + split, "--class_list=%s" % classes, "--data_path=%s" % data_path,
            "--output_dir=%s" % output_dir]


def last_error_line(stderr):
    assert "Traceback" not in stderr, stderr[-2000:]
    return stderr.strip().splitlines()[-1]


def hidden_files(directory):
    return [n for n in os.listdir(directory) if n.startswith(".")]


# ---------------------------------------------------------------------------------------
# OSError on an output: the CLI (real faults a root user also meets).

@pytest.mark.parametrize("fault", ["output_is_directory", "parent_is_file"])
def test_cli_output_fault_is_one_line(tmp_path, fault):
    tsv = tmp_path / "in.tsv"
    tsv.write_text(ROWS)
    out = tmp_path / "out"
    out.mkdir()
    if fault == "output_is_directory":
        (out / "all.npy").mkdir()
        output_dir, named = out, out / "all.npy"
    else:
        (out / "file").write_text("x")
        output_dir, named = out / "file" / "sub", out / "file" / "sub" / "all.npy"
    proc = convert_cli(convert_args(tmp_path, tsv, output_dir))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    line = last_error_line(stderr)
    assert line.startswith("error: %s: " % named), line
    assert ("is a directory" if fault == "output_is_directory" else "cannot write (Not a directory)") in line
    assert hidden_files(out) == []


# ---------------------------------------------------------------------------------------
# Permission denied and disk full: simulated in-process (the tests may run as root, for
# whom permissions never fail, and need no small file system).

def _raise_on_replace(error):
    def replace(src, dst):
        raise error
    return replace


def test_permission_denied_names_the_output_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    monkeypatch.setattr(fileio.os, "replace", _raise_on_replace(PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(InputError) as err:
        with fileio.atomic_open(path) as f:
            f.write("data")
    assert str(err.value) == "%s: cannot write (Permission denied)" % path
    assert os.listdir(tmp_path) == []


def test_permission_denied_on_creation(tmp_path, monkeypatch):
    def mkstemp(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", kwargs["dir"])
    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    with pytest.raises(InputError, match=r"out\.npy: cannot write \(Permission denied\)"):
        fileio.save_npy(tmp_path / "out.npy", np.zeros(3))
    assert os.listdir(tmp_path) == []


class _FullDisk:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_disk_full_is_one_line_and_keeps_the_previous_output(tmp_path, monkeypatch):
    path = tmp_path / "pred.txt"
    path.write_text("previous\n")
    real_open = open

    def full_open(file, *args, **kwargs):
        f = real_open(file, *args, **kwargs)
        return _FullDisk(f) if os.path.basename(str(file)).startswith(".pred.txt.") else f

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(InputError) as err:
        with fileio.atomic_open(path) as f:
            f.write("new\n")
    monkeypatch.undo()
    assert str(err.value) == "%s: cannot write (No space left on device; nothing was written)" % path
    assert os.listdir(tmp_path) == ["pred.txt"] and path.read_text() == "previous\n"


def test_cli_main_turns_any_os_error_into_one_line(capsys):
    def main(argv):
        raise PermissionError(errno.EACCES, "Permission denied", "/runs/log/events")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(main)(["tool"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: /runs/log/events: Permission denied\n"


# ---------------------------------------------------------------------------------------
# SIGTERM and SIGINT.

def _wait_for(predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_removes_temporary_files_and_a_rerun_works(tmp_path, signum):
    """convert_data --split=all keeps a temporary output and a scratch file open while it
    reads; stopped there, it leaves neither, and the same command then succeeds."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir()
    proc = convert_cli(convert_args(tmp_path, fifo, out))
    with open(fifo, "w") as writer:
        writer.write(ROWS)
        writer.flush()
        # The scratch file appears once the first chunk is written; the pipe stays open.
        assert _wait_for(lambda: any(n.endswith(".input_order") for n in os.listdir(out))), os.listdir(out)
        assert len(hidden_files(out)) == 2  # the temporary output and its scratch file
        proc.send_signal(signum)
        # A signal that arrives between two reads of the pipe is handled when the read
        # returns: end the input (closing the pipe), as a real producer eventually does.
    _, stderr = proc.communicate(timeout=60)
    if signum == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM
    else:
        assert proc.returncode == 130 and last_error_line(stderr) == "error: interrupted"
    assert os.listdir(out) == []
    tsv = tmp_path / "in.tsv"
    tsv.write_text(ROWS)
    convert("all", str(tmp_path / "classes.txt"), str(tsv), str(out))  # the rerun, in-process
    assert os.listdir(out) == ["all.npy"]
    table = np.load(out / "all.npy")
    np.testing.assert_array_equal(table[:, 0], [0.5, 2.5, 4.5, 1.5, 3.5, 5.5])  # grouped by class
    np.testing.assert_array_equal(table[:, 3], [0, 0, 0, 1, 1, 1])


def test_forked_worker_never_removes_its_parents_temporaries(tmp_path):
    """A worker forked while a temporary is registered must not delete it on SIGTERM."""
    path = tmp_path / "out.txt"
    with fileio.atomic_open(path) as f:
        tmp = f.name
        pid = os.fork()
        if pid == 0:  # the child: as if a pool terminated it
            fileio.remove_temporaries()
            os._exit(0)
        os.waitpid(pid, 0)
        assert os.path.exists(tmp)
        f.write("kept")
    assert path.read_text() == "kept"


def test_staging_directory_is_removed_on_termination(tmp_path):
    """The export's staging directory (a tree) is registered like a temporary file."""
    staging = tmp_path / ".exported.abc.tmp"
    (staging / "variables").mkdir(parents=True)
    (staging / "variables" / "variables.index").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("user file")
    with fileio.registered_temporary(str(staging)):
        fileio.remove_temporaries()  # what the SIGTERM handler does
        assert not staging.exists()
    assert os.listdir(tmp_path) == ["keep.txt"]
