"""Builds the review folder: index.html, thumbs/ and (with a queue) queue.tsv.

Everything is written into a temporary folder beside OUTPUT_DIR and moved in when complete
(noisylabels.output_dir): a failed run leaves OUTPUT_DIR as it was. An OUTPUT_DIR that holds
anything is refused unless `overwrite`; then only index.html, queue.tsv and thumbs/ are
replaced, only when the owner.json marker an earlier report wrote there proves they are the
report's (noisylabels.output_dir.ownership), and other entries stay.

Page size: one table row per class, at most `per_class` samples per class and MAX_SHOWN
samples in all (per class fewer when the classes are many), and the queue's rows, each
shown sample with a thumbnail of at most 96x96 pixels (a few kilobytes) in thumbs/.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from cleannet.review import decision_used, page, plots, queue, summary, thumbnails
from cleannet.review.predictions import read_predictions
from noisylabels.errors import InputError
from noisylabels.fileio import refuse_output_equal_to_inputs, registered_temporary
from noisylabels.output_dir import (OWNER_MARKER, check_output_directory, make_staging_directory, ownership,
                                    publish_entries)
from noisylabels.state_files import write_marker

TOOL = "cleannet.report"  # the name in the ownership marker of the review folder
PAGE_FILE, QUEUE_FILE = "index.html", "queue.tsv"
OWNED_ENTRIES = (PAGE_FILE, QUEUE_FILE, thumbnails.THUMBS_DIR, OWNER_MARKER)
MAX_SHOWN = 5000  # suspicious samples shown in all classes together
CONFUSIONS_SHOWN = 20


@dataclasses.dataclass
class ReportConfig:
    """The report tool's inputs (flags of the same names)."""

    predictions: str
    class_list: str
    output_dir: str
    image_list: str | None = None
    image_root: str | None = None
    verified_list: str | None = None
    calibration: str | None = None
    val_sim_thres: float = 0.1
    queue: int = 0
    per_class: int = 8
    overwrite: bool = False


@dataclasses.dataclass
class ReportResult:
    """What was written: the page, the queue (or None) and the counts shown on the page."""

    page_path: str
    queue_path: str | None
    samples: int
    shown: int
    queued: int
    missing_images: int
    page_bytes: int


def suspicious_per_class(label: np.ndarray, score: np.ndarray, per_class: int) -> dict[int, np.ndarray]:
    """{class id: indices of its `per_class` lowest-scoring samples, lowest first}."""
    order = np.lexsort((np.arange(len(label)), score, label))
    sorted_labels = label[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    keep = order[(np.arange(len(order)) - starts) < per_class]
    return {int(c): keep[label[keep] == c] for c in np.unique(label[keep])}


def _image_paths(config, predictions):
    """(absolute image path or None per sample, image path as written per sample)."""
    if config.image_list is None and config.image_root is None:
        return [None] * len(predictions), list(predictions.urls)
    root = config.image_root or os.path.dirname(os.path.abspath(config.image_list))
    if not os.path.isdir(root):
        raise InputError("not a directory: %s" % root, field="--image_root")
    listed = thumbnails.read_list_paths(config.image_list, root) if config.image_list else None
    absolute = thumbnails.image_paths_of(predictions.keys, predictions.urls, listed, root, predictions.path,
                                         predictions.lines)
    written = [listed[k][0] if listed and k in listed else u for k, u in zip(predictions.keys, predictions.urls)]
    return absolute, written


def _samples(indices, predictions, thumbs):
    names = predictions.class_names
    return [page.Sample(int(i), predictions.keys[i], names[predictions.label[i]], float(predictions.similarity[i]),
                        float(predictions.margin[i]), names[predictions.suggested[i]] if predictions.suggested[i] >= 0
                        else "", int(predictions.verdict[i]), thumbs.get(int(i))) for i in indices]


def _plots(predictions, used):
    decision = used.decision
    made = [("similarity (cos) of each sample and its labelled class",
             plots.score_histogram(predictions.similarity, predictions.verdict, "similarity",
                                   getattr(decision, "threshold", None)))]
    if predictions.has_margin:
        made.append(("margin: own class score minus the best other class's",
                     plots.score_histogram(predictions.margin, predictions.verdict, "margin",
                                           getattr(decision, "min_margin", None))))
    pairs = summary.confusions(predictions, CONFUSIONS_SHOWN)
    if pairs:
        made.append(("the most frequent label -> suggested class pairs", plots.confusion_bars(pairs)))
    return made


def _summary_html(config, predictions, used, rows, counts):
    wrong = int(np.sum(predictions.verdict == 0))
    unverified = sum(1 for r in rows if r.verified is False)
    items = [("predictions", config.predictions), ("samples", "%d" % len(predictions)),
             ("classes", "%d (%s without verification labels)" % (len(rows), unverified if config.verified_list
                                                                  else "unknown: no --verified_list")),
             ("decision", used.source)]
    if predictions.class_score:
        items.append(("class score", predictions.class_score))
    if used.calibration is not None:
        c = used.calibration
        items.append(("calibration", "min_margin %.4g%s; validation error %.3f on %d verified samples; checkpoint %s"
                      % (c.min_margin, "" if c.threshold is None else ", threshold %.4g" % c.threshold,
                         c.val_error, c.val_samples, c.checkpoint)))
    if used.disagreements:
        items.append(("note", "%d verdicts differ from this decision (made with other settings?)"
                      % used.disagreements))
    items += [("estimated wrong labels", "%d of %d (%.1f%%): the samples the decision judged wrong"
               % (wrong, len(predictions), 100.0 * wrong / len(predictions))),
              ("shown", "the %d most suspicious samples of each class (lowest %s first; %d in all)"
               % (counts["per_class"], "margin" if predictions.has_margin and hasattr(used.decision, "min_margin")
                  else "similarity", counts["shown"])),
              ("images", counts["images"]),
              ("page size", "PAGE_SIZE_PLACEHOLDER")]
    return "<table>%s</table>" % "".join("<tr><th>%s</th><td>%s</td></tr>" % (page.esc(k), page.esc(v))
                                          for k, v in items)


def _image_note(config, thumbs):
    if config.image_list is None and config.image_root is None:
        return "none (no --image_list or --image_root): tables of keys"
    missing = sum(1 for path in thumbs.values() if path is None)
    return "%d thumbnails; %d images missing or unreadable (shown as placeholders)" % (len(thumbs) - missing, missing)


def _check_outputs(config):
    check_output_directory(config.output_dir, "--output_dir", config.overwrite,
                           "pass --overwrite to replace %s there (other entries stay)" % ", ".join(OWNED_ENTRIES))
    inputs = [("--" + name, getattr(config, name)) for name in ("predictions", "class_list", "image_list",
                                                                "verified_list", "calibration")]
    refuse_output_equal_to_inputs({"output_dir": os.path.join(config.output_dir, PAGE_FILE),
                                   "queue": os.path.join(config.output_dir, QUEUE_FILE)}, inputs)


def _queue_indices(config, predictions, used, verified_classes, verified_keys):
    if not config.queue:
        return np.zeros(0, np.int64)
    exclude = np.array([key in verified_keys for key in predictions.keys], bool)
    certainty = decision_used.certainty(predictions, used.decision)
    return queue.select_queue(predictions.label, certainty, config.queue, verified_classes, exclude)


def build_report(config: ReportConfig) -> ReportResult:
    """Writes OUTPUT_DIR/index.html, thumbs/ and (config.queue > 0) queue.tsv (module docstring)."""
    from cleannet.tsv_reader import read_class_list

    _check_outputs(config)
    proof = ownership(config.output_dir, TOOL) if os.path.isdir(config.output_dir) else None
    predictions = read_predictions(config.predictions, read_class_list(config.class_list))
    used = decision_used.find_decision(predictions, config.val_sim_thres, config.calibration)
    verified_classes, verified_keys = (summary.read_verified(config.verified_list, predictions.class_names)
                                       if config.verified_list else (None, set()))
    absolute, written = _image_paths(config, predictions)
    rows = summary.class_rows(predictions, verified_classes)
    with_classes = max(1, sum(1 for r in rows if r.samples))
    per_class = max(1, min(config.per_class, MAX_SHOWN // with_classes))
    relative = predictions.has_margin and hasattr(used.decision, "min_margin")
    score = np.nan_to_num(predictions.margin, nan=np.inf) if relative else predictions.similarity
    shown = suspicious_per_class(predictions.label, score, per_class)
    queued = _queue_indices(config, predictions, used, verified_classes, verified_keys)
    staging = make_staging_directory(config.output_dir)
    with registered_temporary(staging):
        wanted = set(int(i) for indices in shown.values() for i in indices) | set(int(i) for i in queued)
        with_images = bool(config.image_list or config.image_root)
        thumbs = thumbnails.write_thumbnails({i: absolute[i] for i in wanted}, staging) if with_images else {}
        counts = dict(per_class=per_class, shown=sum(len(v) for v in shown.values()),
                      images=_image_note(config, thumbs))
        queue_rows = [(predictions.keys[i], written[i], predictions.class_names[predictions.label[i]])
                      for i in queued]
        text = page.render_page("Label review: %s" % os.path.basename(config.predictions),
                                _summary_html(config, predictions, used, rows, counts), _plots(predictions, used),
                                rows, {c: _samples(v, predictions, thumbs) for c, v in shown.items()},
                                _samples(queued, predictions, thumbs), queue_rows, with_images)
        page_bytes = _write_page(staging, text, thumbs)
        if config.queue:
            with open(os.path.join(staging, QUEUE_FILE), "w", encoding="utf-8", newline="\n") as f:
                f.write(queue.format_queue(*zip(*queue_rows)) if queue_rows else "")
        write_marker(os.path.join(staging, OWNER_MARKER), TOOL, {"predictions": os.path.abspath(config.predictions)})
        publish_entries(staging, config.output_dir, OWNED_ENTRIES, proof)
    missing = sum(1 for path in thumbs.values() if path is None)
    return ReportResult(os.path.join(config.output_dir, PAGE_FILE),
                        os.path.join(config.output_dir, QUEUE_FILE) if config.queue else None, len(predictions),
                        counts["shown"], len(queued), missing, page_bytes)


def _write_page(staging, text, thumbs):
    """Writes index.html with its own size (and the thumbnails') stated; returns its bytes."""
    thumb_bytes = sum(os.path.getsize(os.path.join(staging, p)) for p in thumbs.values() if p)
    size = len(text.encode("utf-8"))
    statement = "%.0f kB of HTML (plots and scripts inline) + %d thumbnails, %.0f kB, in thumbs/" % (
        size / 1000.0, sum(1 for p in thumbs.values() if p), thumb_bytes / 1000.0)
    text = text.replace("PAGE_SIZE_PLACEHOLDER", statement)
    with open(os.path.join(staging, PAGE_FILE), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return len(text.encode("utf-8"))
