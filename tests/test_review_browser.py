"""The review page in a real browser: the operating system's Chromium driven by Playwright.

Skips (saying why) only when Playwright's Python package or a chromium executable is
missing; .ci/run installs chromium (apt-get) when it can.
"""

import os
import shutil

import numpy as np
import pytest

from process_control import run_cli
from review_fixtures import write_class_list, write_image_list, write_images, write_predictions

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path():
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright's Python package is not installed (pip install -r requirements.txt)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium executable on PATH (.ci/run installs it with apt-get when run as root)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    """A report of 300 samples of 6 classes with images (one missing), a queue of 12."""
    tmp = tmp_path_factory.mktemp("review")
    pred = str(tmp / "pred.tsv")
    keys, labels, similarity, margin, verdict = write_predictions(pred, 300, 6, seed=3)
    classes = write_class_list(tmp / "classes.txt", 6)
    rows = write_images(str(tmp / "images"), keys, labels)
    worst = int(np.argmin(np.where(labels == 0, margin, np.inf)))
    os.remove(tmp / "images" / rows[worst][1])  # shown (class 0's most suspicious), missing: a placeholder
    image_list = write_image_list(tmp / "list.tsv", rows)
    all_tsv = tmp / "all.tsv"
    all_tsv.write_text("".join("%s\t%s\tclass_%03d\t%d,1\n" % (k, r[1], c, i)
                               for i, (k, r, c) in enumerate(zip(keys, rows, labels))))
    out = tmp / "review"
    proc = run_cli("util/report.py", "--predictions=" + pred, "--class_list=" + classes, "--image_list=" + image_list,
                   "--image_root=" + str(tmp / "images"), "--output_dir=" + str(out), "--queue=12")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(tmp=tmp, out=out, labels=labels, verdict=verdict, keys=keys, all_tsv=str(all_tsv), rows=rows)


def open_page(browser, review, **context_args):
    context = browser.new_context(accept_downloads=True, **context_args)
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append("failed: " + request.url))
    page.goto("file://" + str(review["out"] / "index.html"), wait_until="load")
    return context, page, errors


def test_page_loads_without_errors_and_the_thumbnails_decode(browser, review):
    context, page, errors = open_page(browser, review)
    # load every thumbnail now (they are lazy), then ask the browser whether each decoded
    sizes = page.evaluate("""async () => {
        document.querySelectorAll('details').forEach(d => { d.open = true; });  // folded classes fill in
        await new Promise(resolve => setTimeout(resolve, 200));
        const images = Array.from(document.querySelectorAll('img'));
        images.forEach(img => { img.loading = 'eager'; });
        await Promise.all(images.map(img => img.decode().catch(() => null)));
        return images.map(img => [img.getAttribute('src'), img.naturalWidth, img.naturalHeight]);
    }""")
    context.close()
    assert errors == []
    files = sorted(os.listdir(review["out"] / "thumbs"))
    assert sizes and {src for src, _, _ in sizes} == {"thumbs/" + name for name in files}
    assert all(width == 96 and height == 96 for _, width, height in sizes), sizes[:5]  # 40x40 images scaled up
    assert page_text(review).count('<div class="ph">no image</div>') >= 1


def page_text(review):
    return open(review["out"] / "index.html", encoding="utf-8").read()


def test_the_per_class_table_sorts_by_a_click(browser, review):
    context, page, errors = open_page(browser, review)
    noise = [float(np.mean(review["verdict"][review["labels"] == c] == 0)) for c in range(6)]
    column = "#class-table tbody tr td:nth-child(4)"
    names = "#class-table tbody tr td:nth-child(1)"
    shown = [float(v) for v in page.eval_on_selector_all(column, "cells => cells.map(c => c.dataset.v)")]
    assert shown == pytest.approx(sorted(noise, reverse=True), abs=1e-6)  # noisiest first as written
    page.click("#class-table th:nth-child(4)")
    ascending = [float(v) for v in page.eval_on_selector_all(column, "cells => cells.map(c => c.dataset.v)")]
    assert ascending == pytest.approx(sorted(noise), abs=1e-6)
    page.click("#class-table th:nth-child(1)")
    assert page.eval_on_selector_all(names, "cells => cells.map(c => c.textContent)") == [
        "class_%03d" % c for c in range(6)]
    context.close()
    assert errors == []


def test_marking_the_queue_downloads_a_file_the_merge_accepts(browser, review):
    context, page, errors = open_page(browser, review)
    queue = [line.split("\t") for line in open(review["out"] / "queue.tsv").read().splitlines()]
    marks = {}
    for position, row in enumerate(queue):
        if position == 5:
            continue  # left unmarked: the merge needs --skip_unfilled for it
        value = str(position % 2)
        page.check('input[name="v%d"][value="%s"]' % (position, value))
        marks[row[0]] = value
    assert page.text_content("#queue-count") == "%d of %d marked" % (len(marks), len(queue))
    with page.expect_download() as download_info:
        page.click("#download-queue")
    filled = review["tmp"] / "queue_filled.tsv"
    download_info.value.save_as(str(filled))
    context.close()
    assert errors == []
    rows = [line.split("\t") for line in filled.read_text().splitlines()]
    assert [r[:3] for r in rows] == [r[:3] for r in queue]
    assert {r[0]: r[3] for r in rows if r[3]} == marks and rows[5][3] == ""
    merged = review["tmp"] / "merged.tsv"
    proc = run_cli("util/merge_queue.py", "--queue=" + str(filled), "--image_feature_list=" + review["all_tsv"],
                   "--output_file=" + str(merged))
    assert proc.returncode == 2 and "--skip_unfilled" in proc.stderr
    proc = run_cli("util/merge_queue.py", "--queue=" + str(filled), "--image_feature_list=" + review["all_tsv"],
                   "--output_file=" + str(merged), "--skip_unfilled")
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = {k: i for i, k in enumerate(review["keys"])}
    expected = ["%s\t%s\tclass_%03d\t%s\t%d,1" % (k, review["rows"][index[k]][1], review["labels"][index[k]], v,
                                                  index[k]) for k, v in marks.items()]
    assert sorted(merged.read_text().splitlines()) == sorted(expected)
