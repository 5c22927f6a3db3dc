"""Keys that must be unique in a list: the check, and its one message.

Every list that a later step joins by key (image lists, all-samples TSVs, predictions,
queues, sample weights) is checked at the first tool that reads it, so a duplicate is
refused there, naming both lines, rather than breaking a later step.
"""

from __future__ import annotations

from noisylabels.errors import InputError


def duplicate_key_error(key: str, first_line: int, path: str, line: int) -> InputError:
    """The one-line error for `key` on `line` of `path`, first seen on `first_line`."""
    return InputError("duplicate key %r (first on line %d); every key of a list must be unique" % (key, first_line),
                      path=path, line=line, field="key")


class UniqueKeys:
    """The keys of one file seen so far, with the line each was first seen on.

    Memory: one dict entry per key (about 100 bytes plus the key's length).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.first_line: dict[str, int] = {}

    def add(self, key: str, line: int) -> None:
        """Records `key` (on 1-based `line`); InputError when an earlier line had it."""
        first = self.first_line.setdefault(key, line)
        if first != line:
            raise duplicate_key_error(key, first, self.path, line)

    def __contains__(self, key: str) -> bool:
        return key in self.first_line
