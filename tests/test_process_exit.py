"""util/process_exit.py: a tool that returns normally ends at once with status 0, after its
atexit handlers and with its buffered output written; an error exit keeps its status."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny absl tool: buffered stdout without a newline, a Python log record to a file, an
# atexit handler writing a file, then main's outcome from argv[1].
TOOL = r"""
import atexit, logging, sys
from absl import app
from noisylabels.process_exit import skip_teardown_on_success

marker, log_path, outcome = sys.argv[1:4]
handler = logging.FileHandler(log_path)
logging.getLogger("tool").addHandler(handler)
logging.getLogger("tool").setLevel(logging.INFO)

def main(argv):
    sys.stdout.write("result line, not flushed")
    logging.getLogger("tool").info("logged before the end")
    atexit.register(lambda: open(marker, "w").write("atexit ran"))
    if outcome == "raise":
        raise SystemExit(3)
    if outcome == "return":
        return 4

app.run(skip_teardown_on_success(main), argv=["tool"])
"""


def _run(tmp_path, outcome):
    marker, log_path = tmp_path / "marker", tmp_path / "log"
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", TOOL, str(marker), str(log_path), outcome],
                            capture_output=True, text=True, env=env, timeout=60)
    return result, marker, log_path


def test_normal_return_runs_atexit_flushes_and_exits_zero(tmp_path):
    result, marker, log_path = _run(tmp_path, "ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "result line, not flushed"
    assert marker.read_text() == "atexit ran"
    assert log_path.read_text() == "logged before the end\n"


def test_error_exit_keeps_its_status_and_the_usual_exit(tmp_path):
    result, marker, _ = _run(tmp_path, "raise")
    assert result.returncode == 3
    assert result.stdout == "result line, not flushed"
    assert marker.read_text() == "atexit ran"


def test_a_returned_status_goes_back_to_absl(tmp_path):
    result, _, _ = _run(tmp_path, "return")
    assert result.returncode == 4


def test_train_and_inference_entry_points_use_it():
    with open(os.path.join(ROOT, "noisylabels", "flagutil.py")) as f:
        assert "app.run(skip_teardown_on_success(cli_main(main)), flags_parser=parse_flags)" in f.read()
    for script in ("train.py", "inference.py"):
        with open(os.path.join(ROOT, "cleannet", "tools", script)) as f:
            assert "    run_tool(main)\n" in f.read(), script
