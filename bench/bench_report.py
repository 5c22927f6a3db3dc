"""How long the review page of a large data set takes to open in a browser, and its size.

    nice -n 10 python bench/bench_report.py [--samples=100000] [--classes=1000] [--queue=1000]

Writes synthetic inference.py output (tsv, relative decision) for --samples samples of
--classes classes with an image per class (64x64 JPEG; every sample of a class points to
it, so each shown sample still reads and scales an image), runs util/report.py's
build_report on it, then opens the page in the system's Chromium (Playwright) --repeats
times in fresh browser pages, from disk, and reports the median time from navigation
start to the load event (performance timing) and to the first contentful paint, next to
the same for a minimal page (the baseline, same browser), with their ratio.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

import cv2
import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
TIMING = """() => {
  const t = performance.timing, paint = performance.getEntriesByName('first-contentful-paint')[0];
  return [t.loadEventEnd - t.navigationStart, paint ? paint.startTime : -1];
}"""


def define_flags():
    flags.DEFINE_integer("samples", 100000, "Samples (rows of the predictions).")
    flags.DEFINE_integer("classes", 1000, "Classes.")
    flags.DEFINE_integer("queue", 1000, "Queue length.")
    flags.DEFINE_integer("repeats", 5, "Page loads measured (median reported).")


def write_inputs(tmp):
    from review_fixtures import class_names, write_class_list, write_image_list, write_predictions

    pred = os.path.join(tmp, "pred.tsv")
    keys, labels, *_ = write_predictions(pred, FLAGS.samples, FLAGS.classes, seed=0)
    classes = write_class_list(os.path.join(tmp, "classes.txt"), FLAGS.classes)
    os.makedirs(os.path.join(tmp, "images"))
    rng = np.random.default_rng(0)
    for name in class_names(FLAGS.classes):
        cv2.imwrite(os.path.join(tmp, "images", name + ".jpg"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    names = class_names(FLAGS.classes)
    image_list = write_image_list(os.path.join(tmp, "list.tsv"),
                                  [(k, "images/" + names[c] + ".jpg", names[c]) for k, c in zip(keys, labels)])
    return pred, classes, image_list


def load_times(browser, url):
    """(load event ms, first contentful paint ms) of one fresh load of `url`."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load")
    time.sleep(0.2)  # loadEventEnd is set after the load handlers return
    load, paint = page.evaluate(TIMING)
    page.close()
    if errors:
        raise RuntimeError("page errors: %s" % errors[:3])
    return load, paint


def measure(url_page, url_blank):
    from playwright.sync_api import sync_playwright

    from test_review_browser import chromium_path

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page_times, blank_times = [], []
        for _ in range(FLAGS.repeats):  # interleaved, so both see the same machine load
            blank_times.append(load_times(browser, url_blank))
            page_times.append(load_times(browser, url_page))
        browser.close()
    return ([statistics.median(t[i] for t in page_times) for i in range(2)],
            [statistics.median(t[i] for t in blank_times) for i in range(2)])


def main(argv):
    del argv
    from cleannet.review.build import ReportConfig, build_report

    tmp = tempfile.mkdtemp(prefix="bench_report.")
    try:
        pred, classes, image_list = write_inputs(tmp)
        started = time.perf_counter()
        result = build_report(ReportConfig(predictions=pred, class_list=classes, output_dir=os.path.join(tmp, "out"),
                                           image_list=image_list, queue=FLAGS.queue))
        build_seconds = time.perf_counter() - started
        thumbs = os.path.join(tmp, "out", "thumbs")
        thumb_bytes = sum(os.path.getsize(os.path.join(thumbs, n)) for n in os.listdir(thumbs))
        blank = os.path.join(tmp, "blank.html")
        with open(blank, "w") as f:
            f.write("<!DOCTYPE html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'></head>"
                    "<body><p>baseline</p></body></html>")
        page, baseline = measure("file://" + result.page_path, "file://" + blank)
        print("%d samples, %d classes, queue %d: report built in %.1f s; index.html %.0f kB, %d thumbnails %.0f kB"
              % (FLAGS.samples, FLAGS.classes, FLAGS.queue, build_seconds, result.page_bytes / 1000.0,
                 len(os.listdir(thumbs)), thumb_bytes / 1000.0))
        print("| page | load event (ms, median of %d) | first contentful paint (ms) |" % FLAGS.repeats)
        print("|---|---|---|")
        print("| minimal page (baseline) | %.0f | %.0f |" % tuple(baseline))
        print("| review page | %.0f | %.0f |" % tuple(page))
        print("| ratio | %.1fx | %.1fx |" % (page[0] / max(baseline[0], 1), page[1] / max(baseline[1], 1)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
