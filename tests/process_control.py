"""Helpers for tests that drive the tools as processes: run a tool once (run_cli), run a
training script and signal it at a logged step (kill-and-resume), read its checkpoints,
and set up a two-worker cluster on 127.0.0.1 (multi-worker distribution)."""

import glob
import json
import os
import re
import socket
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def run_until(args, progress_line, should_stop, timeout=120):
    """Starts `args`; for each stderr line matching `progress_line` (a compiled regex whose
    group 1 is the step), calls should_stop(step); a signal it returns is sent once.

    Returns:
      (finished Popen, last step seen or None). A watchdog kills a run that hangs, so the
      caller's exit-status checks fail instead of the test waiting forever.
    """
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    last_step = None
    signalled = False
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        for line in proc.stderr:  # read to the end: a closed pipe would break the child's logging
            match = progress_line.search(line)
            if match and not signalled:
                last_step = int(match.group(1))
                sig = should_stop(last_step)
                if sig is not None:
                    proc.send_signal(sig)
                    signalled = True
        proc.wait(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, last_step


def checkpoint_steps(directory):
    """Steps of the ckpt-STEP checkpoints in `directory`, ascending."""
    return sorted(int(re.search(r"ckpt-(\d+)\.index$", p).group(1))
                  for p in glob.glob(os.path.join(directory, "ckpt-*.index")))


def read_all(checkpoint_prefix):
    """Every tensor of a checkpoint, by name."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint_prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def free_port():
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_cluster_tf_configs(num_workers=2):
    """TF_CONFIG values (JSON strings), one per worker, for a cluster of local workers."""
    workers = ["127.0.0.1:%d" % free_port() for _ in range(num_workers)]
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            for index in range(num_workers)]


def run_cli(script, *args, module=False, timeout=300):
    """Runs one of the repository's tools as a user would; returns the CompletedProcess (text).

    Args:
      script: the tool's path from the repository root, e.g. "util/convert_data.py".
      *args: its command-line arguments (str).
      module: run it as `python -m cleannet.tools.convert_data` instead of `python ROOT/util/convert_data.py`.
      timeout: seconds before subprocess.TimeoutExpired.
    """
    if module:
        command = ["-m", script[:-len(".py")].replace("/", ".")]
    else:
        command = [os.path.join(ROOT, script)]
    return subprocess.run([sys.executable] + command + [str(a) for a in args], capture_output=True, text=True,
                          cwd=ROOT, env=ENV, timeout=timeout)


def run_flag_error_without_tensorflow(script, defaults, args, tmp_path):
    """Runs a tool whose flags or inputs are wrong and checks it fails fast and alone.

    Args:
      script: the script path relative to the repository root (e.g. "util/extract_features.py").
      defaults: {flag: "--flag=value"} for the flags a valid call would pass.
      args: the test's flags; one naming a flag of `defaults` replaces it, a bare "--flag"
        only removes it; "{tmp}" is replaced by tmp_path.
      tmp_path: the test's directory.

    Returns:
      The one stderr line (exit status 2, TensorFlow and Keras never imported: Python's
      import-time report lists every module imported).
    """
    given = dict(defaults)
    for arg in args:
        given.pop(arg.split("=")[0], None)
    argv = list(given.values()) + [arg.format(tmp=tmp_path) for arg in args if "=" in arg]
    result = subprocess.run([sys.executable, os.path.join(ROOT, script)] + argv, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, PYTHONPROFILEIMPORTTIME="1"))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    assert "tensorflow" not in imported and "keras" not in imported
    errors = [line for line in lines if not line.startswith("import time:")]
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    return errors[0]
