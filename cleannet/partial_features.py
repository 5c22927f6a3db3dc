"""The resume state of a feature extraction: finished batches, kept beside the output.

Two files next to the output OUTPUT while the extraction runs:

  OUTPUT.partial           text: a header line "# extract_features v1 {settings as JSON}",
                           then one line per finished batch of list rows:
                           ROWS_DONE<TAB>FEATURE_ROWS<TAB>LAST_KEY<TAB>SKIPPED
                           (rows of the list done so far, feature rows stored so far, the
                           key of the batch's last list row, the 0-based list rows of the
                           batch that were skipped as unreadable, comma-separated)
  OUTPUT.partial.features  raw float32 [FEATURE_ROWS, feature_dim], row after row.

A batch's features are written and flushed before its line, so after a crash (even
SIGKILL) the last complete line tells what is done; anything after it, in either file, is
cut off when the run resumes. The files are removed once the output is complete.
"""

import json
import os
from typing import List, Sequence

import numpy as np

from noisylabels.errors import InputError

HEADER_PREFIX = "# extract_features v1 "


class PartialFeatures:
    """Creates, resumes and appends to the resume state of one output file.

    Attributes (after `open`):
      rows_done: list rows finished (a batch boundary).
      feature_rows: feature rows stored (rows_done minus the skipped ones).
      last_key: the key of list row rows_done - 1 ("" when none).
      skipped: sorted list of the 0-based list rows skipped as unreadable.
    """

    def __init__(self, output_path: str | os.PathLike, settings: dict, feature_dim: int) -> None:
        self.log_path = os.fspath(output_path) + ".partial"
        self.features_path = os.fspath(output_path) + ".partial.features"
        self.settings = settings
        self.feature_dim = feature_dim
        self.rows_done = self.feature_rows = 0
        self.last_key = ""
        self.skipped: List[int] = []
        self._log = self._features = None

    def exists(self) -> bool:
        return os.path.exists(self.log_path) or os.path.exists(self.features_path)

    def open(self) -> int:
        """Starts a new state, or resumes the existing one. Returns rows_done."""
        if os.path.exists(self.log_path):
            self._resume()
        else:
            os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
            with open(self.log_path, "w", encoding="utf-8") as f:
                f.write(HEADER_PREFIX + json.dumps(self.settings, sort_keys=True) + "\n")
            with open(self.features_path, "wb"):
                pass
        self._log = open(self.log_path, "a", encoding="utf-8")
        self._features = open(self.features_path, "ab")
        return self.rows_done

    def append(self, rows_done: int, features: np.ndarray, skipped: Sequence[int], last_key: str) -> None:
        """Stores one finished batch: float32 [k, feature_dim] features, skipped row indices."""
        block = np.ascontiguousarray(features, dtype="<f4")
        self._features.write(block.tobytes())
        self._features.flush()
        os.fsync(self._features.fileno())
        self.rows_done = rows_done
        self.feature_rows += len(block)
        self.last_key = last_key
        self.skipped.extend(int(i) for i in skipped)
        self._log.write("%d\t%d\t%s\t%s\n" % (rows_done, self.feature_rows, last_key,
                                               ",".join(str(int(i)) for i in skipped)))
        self._log.flush()

    def close(self) -> None:
        for f in (self._log, self._features):
            if f is not None:
                f.close()
        self._log = self._features = None

    def features(self) -> np.ndarray:
        """The stored features, float32 [feature_rows, feature_dim] (memory-mapped)."""
        if self.feature_rows == 0:
            return np.zeros((0, self.feature_dim), np.float32)
        return np.memmap(self.features_path, dtype="<f4", mode="r", shape=(self.feature_rows, self.feature_dim))

    def remove(self) -> None:
        self.close()
        for path in (self.log_path, self.features_path):
            if os.path.exists(path):
                os.remove(path)

    def _resume(self):
        with open(self.log_path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        complete = lines[:-1]  # the text after the last newline is a torn write
        if not complete or not complete[0].decode("utf-8", "replace").startswith(HEADER_PREFIX):
            raise self._damaged("no header line", 1)
        self._check_settings(complete[0].decode("utf-8")[len(HEADER_PREFIX):])
        for line_no, line in enumerate(complete[1:], 2):
            self._read_batch_line(line.decode("utf-8", "replace"), line_no)
        with open(self.log_path, "r+b") as f:
            f.truncate(sum(len(line) + 1 for line in complete))
        size = self.feature_rows * self.feature_dim * 4
        if not os.path.exists(self.features_path) or os.path.getsize(self.features_path) < size:
            raise self._damaged("%s holds fewer than the %d feature rows the log lists"
                                % (self.features_path, self.feature_rows), None)
        with open(self.features_path, "r+b") as f:
            f.truncate(size)

    def _check_settings(self, text):
        try:
            saved = json.loads(text)
        except ValueError:
            raise self._damaged("the header is not valid JSON", 1) from None
        for name in sorted(set(saved) | set(self.settings)):
            if saved.get(name) != self.settings.get(name):
                raise InputError("an unfinished extraction with %s=%r is here, this run has %r: rerun with the "
                                 "same flags to resume it, or delete %s and %s to start again"
                                 % (name, saved.get(name), self.settings.get(name), self.log_path,
                                    self.features_path), path=self.log_path, line=1)

    def _read_batch_line(self, text, line_no):
        fields = text.split("\t")
        try:
            rows_done, feature_rows = int(fields[0]), int(fields[1])
            skipped = [int(i) for i in fields[3].split(",") if i]
        except (ValueError, IndexError):
            raise self._damaged("not a batch line", line_no) from None
        if len(fields) != 4 or rows_done < self.rows_done or feature_rows < self.feature_rows:
            raise self._damaged("not a batch line", line_no)
        self.rows_done, self.feature_rows, self.last_key = rows_done, feature_rows, fields[2]
        self.skipped.extend(skipped)

    def _damaged(self, message, line):
        return InputError("damaged resume state (%s); delete %s and %s to start again"
                          % (message, self.log_path, self.features_path), path=self.log_path, line=line)
