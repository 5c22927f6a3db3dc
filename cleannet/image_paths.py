"""Image paths of a list joined to the image root, without leaving it (no TensorFlow needed).

Used by the feature extraction, the classifier's image-list mode and the review page.
"""

import os

from noisylabels.errors import InputError


def resolve_image_path(image_path: str, image_root: str, list_path: str, line: int | None,
                       allow_absolute: bool = True) -> str:
    """Joins a list entry to the root; InputError (list_path:line) if it leaves the root.

    Args:
      image_path: the list's second column.
      image_root: the directory relative paths are joined to.
      list_path, line: where the entry is, for the error.
      allow_absolute: True: an absolute entry is returned normalised, unchecked; False: it
        must lie inside the root too.

    Returns:
      str, the normalised path. The check is on the text of the path (`..` and absolute
      entries); symbolic links inside the root are followed as they are.
    """
    if os.path.isabs(image_path) and allow_absolute:
        return os.path.normpath(image_path)
    root = os.path.normpath(os.path.abspath(image_root))
    joined = os.path.normpath(os.path.join(root, image_path))
    if os.path.commonpath([root, joined]) != root:
        raise InputError("image path %r leaves the image root %s" % (image_path, root),
                         path=list_path, line=line, field="image_path")
    return joined
