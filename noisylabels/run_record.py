"""A run's lock and record, TensorFlow-free (the training core and the classifier use them).

- `DirectoryLock`: an exclusive flock on DIRECTORY/run.lock for the life of a run; a second
  run on the same directory is refused with one line naming the holder (pid and host).
- `make_record` / `check_record`: DIRECTORY/run.json records what a run trains on (each
  data file's size and a SHA-256 of its first and last MiB, and the settings that shape the
  model and the data); resuming with other data or settings is refused with one line
  saying how to start afresh.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket

from noisylabels.errors import InputError
from noisylabels.fileio import atomic_open

LOCK_FILE = "run.lock"
RECORD_FILE = "run.json"
_DIGEST_BYTES = 1 << 20  # first and last MiB of each data file


def file_identity(path: str) -> dict:
    """Size and a SHA-256 of the first and last MiB of a file: cheap even for a 5 GB file,
    and different for any edit that changes the size, the header or either end."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_DIGEST_BYTES))
        if size > 2 * _DIGEST_BYTES:
            f.seek(size - _DIGEST_BYTES)
            digest.update(f.read(_DIGEST_BYTES))
    return {"size": size, "sha256_ends": digest.hexdigest()}


def make_record(data_files: dict, settings: dict) -> dict:
    """The run record: {"data": name -> file_identity, "settings": name -> value}."""
    return {"data": {name: file_identity(path) for name, path in sorted(data_files.items())},
            "settings": dict(settings)}


def _describe_difference(stored: dict, wanted: dict) -> str:
    changes = []
    for name in sorted(set(stored.get("data", {})) | set(wanted["data"])):
        if stored.get("data", {}).get(name) != wanted["data"].get(name):
            changes.append("%s changed" % name)
    for name in sorted(set(stored.get("settings", {})) | set(wanted["settings"])):
        old, new = stored.get("settings", {}).get(name), wanted["settings"].get(name)
        if old != new:
            changes.append("--%s %s -> %s" % (name, old, new))
    return ", ".join(changes)


def check_record(directory: str, record: dict, resuming: bool, write: bool = True) -> None:
    """Refuses to resume (resuming: the directory holds a run's state) a run made on other
    data or settings than `record` (from make_record); writes DIRECTORY/run.json otherwise.

    A directory without a record (an imported checkpoint, an older run) is accepted and gets one.
    """
    path = os.path.join(directory, RECORD_FILE)
    stored = None
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                stored = json.load(f)
        except (OSError, ValueError) as err:
            raise InputError("unreadable run record (%s)" % err, path=path) from None
    if stored is not None and resuming:
        difference = _describe_difference(stored, record)
        if difference:
            raise InputError("holds a run trained on other data or settings (%s); to start afresh use a "
                             "new directory or delete this one" % difference, path=directory)
    if stored != record and write:
        with atomic_open(path) as f:
            json.dump(record, f, indent=1, sort_keys=True)


class DirectoryLock:
    """An exclusive flock on DIRECTORY/run.lock; the file says who holds it."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd = None

    def __enter__(self) -> "DirectoryLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise InputError("is in use by another run (%s); wait for it to end or use another directory"
                             % holder, path=os.path.dirname(self.path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("pid %d on %s\n" % (os.getpid(), socket.gethostname())).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
