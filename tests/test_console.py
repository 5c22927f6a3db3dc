"""The quiet console: TensorFlow's start-up notices are filtered, everything else is kept."""

import os
import subprocess
import sys

from noisylabels.console import is_noise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NOTICES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796024842.207388   10448 port.cc:153] oneDNN custom operations are on. You may see",
    "I0000 00:00:1796024842.267371   10448 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.",
    "E0000 00:00:1796024855.203853   10555 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
]
REAL = [
    "error: /data/train.npy: file not found",
    "E0000 00:00:1796024855.203853   10555 op_kernel.cc:1800] OP_REQUIRES failed at matmul: out of memory",
    "Traceback (most recent call last):",
    "W1130 08:00:00.000000 140 training_loop.py:10] Checkpoint ckpt-4 is damaged; trying the previous one.",
]


def test_notices_are_noise_and_real_messages_are_not():
    assert all(is_noise(line) for line in NOTICES)
    assert not any(is_noise(line) for line in REAL)


def test_loading_tensorflow_prints_nothing_but_what_the_program_says():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from noisylabels.console import load_tensorflow\n"
            "tf = load_tensorflow()\n"
            "sys.stderr.write('real error line\\n')\n"
            "print(int(tf.reduce_sum(tf.ones([3]))))\n") % ROOT
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3"
    assert proc.stderr.strip().splitlines() == ["real error line"], proc.stderr


def test_a_real_error_written_while_tensorflow_loads_is_kept_in_order():
    code = ("import os, sys; sys.path.insert(0, %r)\n"
            "from noisylabels.console import quiet_startup\n"
            "with quiet_startup():\n"
            "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written\\n')\n"
            "    os.write(2, b'native error: libfoo.so not found\\n')\n"
            "    sys.stderr.write('python warning\\n')\n"
            "sys.stderr.write('after\\n')\n") % ROOT
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stderr.splitlines() == ["native error: libfoo.so not found", "python warning", "after"], proc.stderr


def test_a_training_run_logs_no_tensorflow_info_lines(tmp_path):
    """A checkpoint save logs TensorFlow's "Sharding callback duration" INFO line unless quieted."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from absl import logging\n"
            "logging.set_verbosity(logging.INFO)\n"
            "from noisylabels.console import load_tensorflow\n"
            "tf = load_tensorflow()\n"
            "logging.info('our own line')\n"
            "tf.train.Checkpoint(v=tf.Variable(1.0)).save(%r)\n") % (ROOT, str(tmp_path / "ckpt"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "our own line" in proc.stderr
    assert "Sharding callback" not in proc.stderr and "functional_saver" not in proc.stderr, proc.stderr
