"""Streaming reader of image lists: the CleanNet TSV layouts without the feature column.

One image per line, tab-separated, UTF-8:

    key<TAB>image_path<TAB>class_name              (3 columns: all samples)
    key<TAB>image_path<TAB>class_name<TAB>vlabel   (4 columns: verified samples)

Every row of a list has the same number of columns (the first row sets it). vlabel is 1
(label correct), 0 (label wrong) or -1 (invalid). Blank lines are skipped (line numbers
still count them), a UTF-8 byte-order mark and CR line ends are accepted. With the feature
column appended, the rows are exactly the 4- and 5-column TSVs util/convert_data.py
reads (the image path takes the url column). The list is read line by line with the
shared line-length bound (noisylabels.fileio.iter_text_lines): memory does not grow with
its length. `iter_list_rows(..., unique_keys=True)` (the first tool to read a list does
this) also refuses a key that is on an earlier line, naming both lines.
"""

import dataclasses
from typing import Iterator, List, Optional, Sequence

from noisylabels.errors import InputError
from noisylabels.fileio import iter_text_lines
from noisylabels.unique_keys import duplicate_key_error

LIST_COLUMNS = {3: "all", 4: "verified"}
VLABELS = ("1", "0", "-1")


@dataclasses.dataclass
class ListRow:
    """One row of an image list.

    Attributes:
      index: 0-based row number among the non-blank lines.
      line: 1-based line number in the file.
      fields: the columns as written (3 or 4 str).
    """

    index: int
    line: int
    fields: List[str]

    @property
    def key(self) -> str:
        return self.fields[0]

    @property
    def image_path(self) -> str:
        return self.fields[1]

    @property
    def class_name(self) -> str:
        return self.fields[2]

    @property
    def vlabel(self) -> Optional[int]:
        """1, 0 or -1 (4-column lists); None for a 3-column list."""
        return int(self.fields[3]) if len(self.fields) == 4 else None


def _check_row(fields, columns, path, line, class_set):
    """Raises InputError (path:line, field) for a malformed row."""
    if len(fields) not in LIST_COLUMNS:
        raise InputError("expected 3 (key, image_path, class_name) or 4 (... vlabel) tab-separated "
                         "columns, found %d" % len(fields), path=path, line=line)
    if len(fields) != columns:
        raise InputError("%d columns, but the first row has %d (every row of a list has the same layout)"
                         % (len(fields), columns), path=path, line=line)
    for position, name in enumerate(("key", "image_path", "class_name")):
        if not fields[position].strip():
            raise InputError("empty %s" % name, path=path, line=line, field=name)
    if class_set is not None and fields[2] not in class_set:
        raise InputError("class %r is not in the class list" % fields[2], path=path, line=line, field="class_name")
    if columns == 4 and fields[3].strip() not in VLABELS:
        raise InputError("expected 1, 0 or -1, found %r" % fields[3][:40], path=path, line=line, field="vlabel")


def iter_list_rows(path: str, class_names: Optional[Sequence[str]] = None, start: int = 0,
                   stop: Optional[int] = None, unique_keys: bool = False) -> Iterator[ListRow]:
    """Yields the rows [start, stop) of an image list, checked (module docstring), in order.

    Args:
      path: the list file.
      class_names: if given, every class_name must be one of them.
      start, stop: 0-based row range (non-blank lines); stop None: to the end.
      unique_keys: also refuse a key seen on an earlier line (memory: a hash per row).

    Raises:
      InputError naming the file, the line and the field of the first bad row (rows
      before `start` are checked too), or a list without rows.
    """
    class_set = set(class_names) if class_names is not None else None
    columns = None
    index = 0
    key_hashes = set()
    for line, text in iter_text_lines(path):
        if stop is not None and index >= stop:
            return
        if not text.strip():
            continue
        fields = text.split("\t")
        columns = len(fields) if columns is None else columns
        _check_row(fields, columns, path, line, class_set)
        if unique_keys:
            if hash(fields[0]) in key_hashes:
                _check_duplicate(path, fields[0], line)
            key_hashes.add(hash(fields[0]))
        if len(fields) == 4:
            fields[3] = fields[3].strip()
        if index >= start:
            yield ListRow(index, line, fields)
        index += 1
    if columns is None:
        raise InputError("no rows (the list is empty)", path=path)


def _check_duplicate(path, key, line):
    """Raises InputError when `key` is on a line before `line` (a hash match is confirmed
    by reading the list again up to `line`)."""
    for earlier, text in iter_text_lines(path):
        if earlier >= line:
            return
        if text.split("\t", 1)[0] == key and text.strip():
            raise duplicate_key_error(key, earlier, path, line)
