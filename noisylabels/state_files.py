"""A tool's own state files: the one reader of JSON state and the one ownership check.

State files are what a tool writes to read back later (run settings, run records,
calibration.json, stage.json, an ownership marker). `read_json_state` reads any of them:
a file that is empty, truncated, not JSON or not a JSON object is one `InputError`
naming the file and saying what to do, never a traceback.

Ownership is proven, never assumed. A tool that will later delete or replace files
writes a *marker* first: one JSON object {"tool": NAME, "format_version": N,
"settings": {...}} (`encode_marker`), in a file of its own (`write_marker`) or as the
header of a file it owns (extraction's resume log). Only a marker naming the same tool
and format version proves ownership (`read_marker` / `decode_marker` return an `Owned`);
the mere presence of a file a user or a shell could have made proves nothing. Every
deletion of an earlier run's files goes through `delete_owned`, which needs that proof.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterable

from noisylabels.errors import InputError
from noisylabels.fileio import atomic_open

MARKER_FORMAT_VERSION = 1
# A state file is a few KiB; a larger one is not what a tool wrote (read no further).
MAX_STATE_BYTES = 1 << 24


def read_json_state(path: str, remedy: str, field: str | None = None) -> dict:
    """The JSON object in state file `path`.

    Args:
      path: the state file (it must exist; callers decide what a missing one means).
      remedy: what the user should do when it is damaged, e.g. "run X again" or "delete it
        to start afresh"; ends the message.
      field: the flag the file came from, for the message.

    Raises:
      InputError (one line naming `path`): unreadable, empty, truncated, not JSON, not an
        object, or larger than any state file a tool writes.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    except OSError as err:
        raise InputError("cannot read this state file (%s); %s" % (err.strerror or err, remedy),
                         path=path, field=field) from None
    if len(data) > MAX_STATE_BYTES:
        raise InputError("larger than any state file a tool writes (%d bytes); %s" % (MAX_STATE_BYTES, remedy),
                         path=path, field=field)
    if not data.strip():
        raise InputError("empty state file (an interrupted write?); %s" % remedy, path=path, field=field)
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError("damaged state file, not JSON (%s); %s" % (str(err).splitlines()[0], remedy),
                         path=path, field=field) from None
    if not isinstance(value, dict):
        raise InputError("damaged state file: a JSON %s, not the object a tool writes; %s"
                         % (type(value).__name__, remedy), path=path, field=field)
    return value


@dataclasses.dataclass(frozen=True)
class Owned:
    """Proof that `tool` made the files a marker stands for: its settings and the marker."""

    tool: str
    settings: dict
    marker: str


def encode_marker(tool: str, settings: dict) -> str:
    """One line of JSON: the marker of `tool` run with `settings` (JSON-serialisable)."""
    return json.dumps({"tool": tool, "format_version": MARKER_FORMAT_VERSION, "settings": settings},
                      sort_keys=True)


def decode_marker(text: str, tool: str, where: str) -> Owned | None:
    """The `Owned` proof in marker text `text`, or None when it is not `tool`'s marker
    (not JSON, another tool, another format version, no settings object)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if (not isinstance(value, dict) or value.get("tool") != tool
            or value.get("format_version") != MARKER_FORMAT_VERSION or not isinstance(value.get("settings"), dict)):
        return None
    return Owned(tool, value["settings"], where)


def write_marker(path: str, tool: str, settings: dict) -> Owned:
    """Writes `tool`'s marker file at `path` (atomically); returns the proof it gives."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(encode_marker(tool, settings) + "\n")
    return Owned(tool, dict(settings), path)


def read_marker(path: str, tool: str, remedy: str) -> Owned | None:
    """The proof in marker file `path`; None when there is no file there.

    Raises:
      InputError (one line naming `path`, ending in `remedy`): the file is there but is not
        `tool`'s marker (empty, truncated, another tool's or another version's): it proves
        nothing, so nothing beside it may be deleted.
    """
    if not os.path.lexists(path):
        return None
    state = read_json_state(path, remedy)
    owned = decode_marker(json.dumps(state), tool, path)
    if owned is None:
        raise InputError("not a marker written by %s (format version %d); it proves nothing about the files "
                         "beside it; %s" % (tool, MARKER_FORMAT_VERSION, remedy), path=path)
    return owned


def delete_owned(paths: Iterable[str], proof: Owned) -> None:
    """Deletes `paths` (files, links, directory trees; missing ones are skipped), which the
    tool of `proof` made: the one place where a tool deletes an earlier run's output."""
    if not isinstance(proof, Owned):
        raise TypeError("delete_owned needs the Owned proof of a marker, got %r" % (proof,))
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
