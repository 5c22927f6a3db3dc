"""Downloads a tool may make, and how they fail offline: one line, the flag that avoids them.

The one download in these tools is Keras fetching pretrained weights
(`keras.applications.*(weights="imagenet")`, used by util/extract_features.py). Keras
reports a failed fetch as a bare `Exception("URL fetch failure on URL: ...")` chained to
urllib's error; `refuse_offline` turns any such failure in its block into one InputError
naming what could not be fetched and the flag that avoids the download.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.error
from collections.abc import Iterator

from noisylabels.errors import InputError

_NETWORK_ERRORS = (urllib.error.URLError, socket.timeout, socket.gaierror, ConnectionError)


def is_download_failure(err: BaseException) -> bool:
    """Whether `err` (or an error it was raised from or while handling) is a failed fetch."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, _NETWORK_ERRORS) or str(err).startswith("URL fetch failure"):
            return True
        err = err.__cause__ or err.__context__
    return False


@contextlib.contextmanager
def refuse_offline(what: str, avoid: str, field: str) -> Iterator[None]:
    """Runs the block; a failed download in it becomes one InputError.

    Args:
      what: what was being fetched, e.g. "the ImageNet weights of ResNet50".
      avoid: how to do without the download, e.g. "pass --weights=FILE.weights.h5 ...".
      field: the flag that asked for the download (e.g. "--weights").
    """
    try:
        yield
    except InputError:
        raise
    except Exception as err:
        if not is_download_failure(err):
            raise
        reason = (str(err).splitlines() or [type(err).__name__])[0][:300]
        raise InputError("cannot download %s (%s): this machine cannot reach the network or the server; %s"
                         % (what, reason, avoid), field=field) from None
