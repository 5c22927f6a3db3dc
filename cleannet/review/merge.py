"""Merges a filled verification queue into the verified training data.

Inputs:
  queue: queue.tsv filled by a person (cleannet.review.queue): key, image_path,
    class_name, vlabel with vlabel 1 (label correct) or 0 (wrong).
  image_feature_list: the all-samples TSV (key, [url,] class_name, feature) the
    predictions were made from; each queued key's feature is looked up there.
  verified_tsv (optional): the verified TSV the model was trained on (key, [url,]
    class_name, vlabel, feature); its lines are copied first, byte for byte.
Output: a verified TSV (the layout of verified_tsv, or with a url column when the
all-samples TSV has one) holding verified_tsv's rows and one row per filled queue row:
key, [url,] class_name, vlabel, feature (the feature text as in the all-samples TSV).

Refused, with one line naming the file and line: a vlabel other than 1, 0 or empty, a
duplicate key, an empty vlabel (unless skip_unfilled), a key that is not in the all-samples
TSV or whose class differs there, a key that verified_tsv already holds. The output is
written atomically; it must not be an input, and an existing one is replaced only with
overwrite.
"""

from __future__ import annotations

import dataclasses
import os

from cleannet.review.queue import read_queue
from noisylabels.errors import InputError, check_flag
from noisylabels.fileio import atomic_open, iter_text_lines, refuse_output_equal_to_inputs

MAX_TSV_LINE_BYTES = 1 << 26  # a feature row: 2048 values of up to 64 bytes, and more


@dataclasses.dataclass
class MergeResult:
    """Rows copied from the verified TSV, added from the queue (by vlabel), unfilled left out."""

    copied: int
    added_correct: int
    added_wrong: int
    skipped_unfilled: int


@dataclasses.dataclass
class FeatureRow:
    line: int
    url: str | None  # None: the all-samples TSV has no url column
    class_name: str
    feature: str


def _split_all_row(text, path, line):
    """(key, url or None, class_name, feature) of an all-samples TSV row."""
    meta, tab, feature = text.rpartition("\t")
    fields = meta.split("\t") if tab else []
    if len(fields) not in (2, 3):
        raise InputError("expected 3 or 4 tab-separated columns (key, [url,] class_name, feature), found %d"
                         % (len(fields) + 1), path=path, line=line)
    if len(fields) == 2:
        return fields[0], None, fields[1], feature
    return fields[0], fields[1], fields[2], feature


def find_features(path: str, keys: set[str]) -> dict[str, FeatureRow]:
    """{key: FeatureRow} for the `keys` present in the all-samples TSV at `path` (streamed)."""
    found = {}
    for line, text in iter_text_lines(path, field="--image_feature_list", max_line_bytes=MAX_TSV_LINE_BYTES):
        if not text.strip():
            continue
        key, _, rest = text.partition("\t")
        if key not in keys or key in found:
            continue
        key, url, class_name, feature = _split_all_row(text, path, line)
        found[key] = FeatureRow(line, url, class_name, feature)
    return found


def read_verified_keys(path: str) -> tuple[dict[str, int], bool, bool]:
    """({key: line}, has a url column, ends with a line end) of a verified TSV."""
    keys, with_url, ends_with_newline = {}, None, True
    for line, text in iter_text_lines(path, field="--verified_tsv", max_line_bytes=MAX_TSV_LINE_BYTES):
        if not text.strip():
            continue
        columns = text.count("\t") + 1
        if columns not in (4, 5):
            raise InputError("expected 4 or 5 tab-separated columns (key, [url,] class_name, vlabel, feature), "
                             "found %d" % columns, path=path, line=line)
        with_url = columns == 5 if with_url is None else with_url
        keys.setdefault(text.split("\t", 1)[0], line)
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            ends_with_newline = f.read(1) == b"\n"
    return keys, bool(with_url), ends_with_newline


def _filled_rows(queue_path, skip_unfilled):
    rows = read_queue(queue_path)
    unfilled = [row for row in rows if row.vlabel == ""]
    if unfilled and not skip_unfilled:
        raise InputError("vlabel not filled (%d of %d rows are empty): mark each 1 (label correct) or 0 (wrong), "
                         "or pass --skip_unfilled to leave them out" % (len(unfilled), len(rows)), path=queue_path,
                         line=unfilled[0].line, field="vlabel")
    return [row for row in rows if row.vlabel != ""], len(unfilled)


def _check_rows(rows, features, verified_keys, queue_path, all_path, verified_path):
    for row in rows:
        if row.key in verified_keys:
            raise InputError("key %r is already verified in %s:%d" % (row.key, verified_path, verified_keys[row.key]),
                             path=queue_path, line=row.line, field="key")
        found = features.get(row.key)
        if found is None:
            raise InputError("unknown key %r: not in %s" % (row.key, all_path), path=queue_path, line=row.line,
                             field="key")
        if found.class_name != row.class_name:
            raise InputError("class %r here but %r in %s:%d" % (row.class_name, found.class_name, all_path,
                                                                 found.line), path=queue_path, line=row.line,
                             field="class_name")


def merge_queue(queue_path: str, image_feature_list: str, output_file: str, verified_tsv: str | None = None,
                skip_unfilled: bool = False, overwrite: bool = False) -> MergeResult:
    """Writes the merged verified TSV (module docstring)."""
    refuse_output_equal_to_inputs({"output_file": output_file}, [("--queue", queue_path),
                                                                 ("--image_feature_list", image_feature_list),
                                                                 ("--verified_tsv", verified_tsv)])
    check_flag(overwrite or not os.path.exists(output_file), "output_file",
               "%s exists; pass --overwrite to replace it" % output_file)
    rows, unfilled = _filled_rows(queue_path, skip_unfilled)
    verified_keys, with_url, ends_with_newline = {}, None, True
    if verified_tsv:
        verified_keys, with_url, ends_with_newline = read_verified_keys(verified_tsv)
    features = find_features(image_feature_list, {row.key for row in rows})
    _check_rows(rows, features, verified_keys, queue_path, image_feature_list, verified_tsv)
    if with_url is None:
        with_url = any(f.url is not None for f in features.values())
    with atomic_open(output_file, "wb") as out:
        if verified_tsv:
            with open(verified_tsv, "rb") as f:
                while True:
                    block = f.read(1 << 20)
                    if not block:
                        break
                    out.write(block)
            if not ends_with_newline:
                out.write(b"\n")
        for row in rows:
            found = features[row.key]
            columns = [row.key] + ([found.url or row.image_path] if with_url else []) + [
                row.class_name, row.vlabel, found.feature]
            out.write(("\t".join(columns) + "\n").encode("utf-8"))
    return MergeResult(len(verified_keys), sum(r.vlabel == "1" for r in rows), sum(r.vlabel == "0" for r in rows),
                       unfilled)
