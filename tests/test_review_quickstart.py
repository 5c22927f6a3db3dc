"""The quickstart ends by writing the review page and the verification queue, and prints their paths."""

import os
import subprocess
import sys

import pytest

from process_control import ENV, ROOT


@pytest.mark.slow
def test_quickstart_writes_the_review_page_and_a_queue_of_unverified_samples(tmp_path):
    work = tmp_path / "qs"
    proc = subprocess.run([sys.executable, "-m", "cleannet.quickstart", "--work_dir=" + str(work), "--n_step=200"],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    page = work / "report" / "index.html"
    assert "Review page of the training labels (open it in a browser): %s" % page in proc.stdout
    text = page.read_text(encoding="utf-8")
    assert "relative, calibrated (calibration.json)" in text
    assert len(os.listdir(work / "report" / "thumbs")) >= 80  # 8 per class at least
    queue = [line.split("\t") for line in (work / "report" / "queue.tsv").read_text().splitlines()]
    verified = {line.split("\t")[0] for line in (work / "tsv" / "train.tsv").read_text().splitlines()}
    assert len(queue) == 100 and all(row[3] == "" for row in queue)
    # digits 0-4 have every training sample verified: the queue holds digits 5-9 only, none verified
    assert {row[2] for row in queue} <= {"digit_%d" % d for d in range(5, 10)}
    assert not verified & {row[0] for row in queue}
