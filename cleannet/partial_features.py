"""The resume state of a feature extraction: finished batches, kept beside the output.

Two files next to the output OUTPUT while the extraction runs:

  OUTPUT.partial           text: a header line "# " + the extractor's ownership marker (one
                           JSON object: tool "extract_features", format version, the
                           settings; noisylabels/state_files.py), then one line per
                           finished batch of list rows:
                           ROWS_DONE<TAB>FEATURE_ROWS<TAB>LAST_KEY<TAB>SKIPPED
                           (rows of the list done so far, feature rows stored so far, the
                           key of the batch's last list row, the 0-based list rows of the
                           batch that were skipped as unreadable, comma-separated)
  OUTPUT.partial.features  raw float32 [FEATURE_ROWS, feature_dim], row after row.

A batch's features are written and flushed before its line, so after a crash (even
SIGKILL) the last complete line tells what is done; anything after it, in either file, is
cut off when the run resumes. The files are removed once the output is complete.

A state made with the same settings (the batch size aside: it does not change what a row
holds) is resumed. One whose header proves the extractor wrote it but that was made with
other settings, from another list, or is damaged, is replaced with a one-line notice.
Files whose header proves nothing (a user's file of that name, an empty log, a features
file without its log) are never touched: the run is refused with one line.
"""

import os
from typing import List, Optional, Sequence

import numpy as np
from absl import logging

from noisylabels.errors import InputError
from noisylabels.state_files import Owned, decode_marker, delete_owned, encode_marker

TOOL = "extract_features"
HEADER_PREFIX = "# "
# Settings a resumed run may change: they do not change the features of a row.
RESUMABLE_SETTINGS = ("batch_size",)


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
        self._reset()
        self._log = self._features = None
        self._owned: Optional[Owned] = None

    def _reset(self):
        self.rows_done = self.feature_rows = 0
        self.last_key = ""
        self.skipped: List[int] = []

    def exists(self) -> bool:
        return os.path.lexists(self.log_path) or os.path.lexists(self.features_path)

    def open(self) -> int:
        """Starts a new state, resumes a compatible one or replaces one of ours made with other
        settings (module docstring). Returns rows_done.

        Raises:
          InputError: the files there do not prove the extractor wrote them.
        """
        if os.path.lexists(self.log_path):
            self._owned = self._proof()
            reason = self._incompatibility()
            if reason is None:
                reason = self._resume()
            if reason is not None:
                self.restart(reason)
        elif os.path.lexists(self.features_path):
            raise InputError("is here without its log %s, so nothing proves this run's extractor wrote it; it was "
                             "left as it is: move it away or choose another --output_file"
                             % self.log_path, path=self.features_path)
        else:
            self._create()
        self._open_for_append()
        return self.rows_done

    def restart(self, reason: str) -> None:
        """Replaces this (proven) state with a new empty one, saying why in one line."""
        was_open = self._log is not None
        logging.warning("%s: replacing the unfinished extraction here (%s); starting from the first row",
                        self.log_path, reason)
        self.remove()
        self._reset()
        self._create()
        if was_open:
            self._open_for_append()

    def _open_for_append(self):
        self._log = open(self.log_path, "a", encoding="utf-8")
        self._features = open(self.features_path, "ab")

    def _create(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
        marker = encode_marker(TOOL, self.settings)
        with open(self.log_path, "x", encoding="utf-8") as f:
            f.write(HEADER_PREFIX + marker + "\n")
        self._owned = Owned(TOOL, dict(self.settings), self.log_path)
        with open(self.features_path, "wb"):
            pass

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
        """Deletes both files; only ever a state whose marker this object read or wrote."""
        self.close()
        if self._owned is not None:
            delete_owned([self.log_path, self.features_path], self._owned)

    def _proof(self) -> Owned:
        """The ownership marker in the log's header; InputError when it proves nothing."""
        with open(self.log_path, "rb") as f:
            header = f.readline(1 << 20).decode("utf-8", "replace").rstrip("\n")
        owned = None
        if header.startswith(HEADER_PREFIX):
            owned = decode_marker(header[len(HEADER_PREFIX):], TOOL, self.log_path)
        if owned is None:
            raise InputError("does not start with the extractor's header line, so nothing proves this run's "
                             "extractor wrote it or %s; both were left as they are: move them away or choose "
                             "another --output_file" % self.features_path, path=self.log_path, line=1)
        return owned

    def _incompatibility(self) -> Optional[str]:
        """Why the stored state cannot be resumed with this run's settings, or None."""
        saved = self._owned.settings
        for name in sorted(set(saved) | set(self.settings)):
            if name not in RESUMABLE_SETTINGS and saved.get(name) != self.settings.get(name):
                return "it was made with %s=%r, this run has %r" % (name, saved.get(name), self.settings.get(name))
        return None

    def _resume(self) -> Optional[str]:
        """Reads the finished batches and cuts off a torn write; returns why it cannot be
        resumed (a damaged state), or None."""
        with open(self.log_path, "rb") as f:
            data = f.read()
        complete = data.split(b"\n")[:-1]  # the text after the last newline is a torn write
        for line_no, line in enumerate(complete[1:], 2):
            if not self._read_batch_line(line.decode("utf-8", "replace")):
                return "line %d of it is damaged" % line_no
        size = self.feature_rows * self.feature_dim * 4
        if not os.path.isfile(self.features_path) or os.path.getsize(self.features_path) < size:
            return "%s holds fewer than the %d feature rows the log lists" % (self.features_path, self.feature_rows)
        with open(self.log_path, "r+b") as f:
            f.truncate(sum(len(line) + 1 for line in complete))
        with open(self.features_path, "r+b") as f:
            f.truncate(size)
        return None

    def _read_batch_line(self, text) -> bool:
        fields = text.split("\t")
        try:
            rows_done, feature_rows = int(fields[0]), int(fields[1])
            skipped = [int(i) for i in fields[3].split(",") if i]
        except (ValueError, IndexError):
            return False
        if len(fields) != 4 or rows_done < self.rows_done or feature_rows < self.feature_rows:
            return False
        self.rows_done, self.feature_rows, self.last_key = rows_done, feature_rows, fields[2]
        self.skipped.extend(skipped)
        return True
