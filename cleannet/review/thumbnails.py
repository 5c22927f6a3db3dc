"""Thumbnails of the samples shown on the review page, as small JPEG files beside the page.

Each image is read with OpenCV, scaled so that its longer side is THUMBNAIL_SIDE pixels
(INTER_AREA when shrinking, INTER_NEAREST when enlarging tiny images such as 8x8 digits),
and written as `thumbs/<n>.jpg` (quality 85). An image that is missing or cannot be decoded
gets no file: the page shows a placeholder and counts it.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from cleannet.image_paths import resolve_image_path

THUMBNAIL_SIDE = 96  # pixels, the longer side
JPEG_QUALITY = 85
THUMBS_DIR = "thumbs"


def image_paths_of(keys, urls, list_paths: dict | None, image_root: str | None, predictions_path: str,
                   lines) -> list[str | None]:
    """The absolute image path of every sample, or None when it has none.

    The image list's path for the key when a list is given (checked when read), else the
    predictions' url column joined to --image_root. A path that leaves the root is an
    InputError naming the file and line.
    """
    if image_root is None:
        return [None] * len(keys)
    paths = []
    for key, url, line in zip(keys, urls, lines):
        if list_paths is not None:
            paths.append(list_paths[key][1] if key in list_paths else None)
        elif url:
            paths.append(resolve_image_path(url, image_root, predictions_path, int(line), allow_absolute=False))
        else:
            paths.append(None)
    return paths


def read_list_paths(list_path: str, image_root: str) -> dict[str, tuple[str, str]]:
    """{key: (image path as listed, absolute image path)} of an image list; InputError for a
    path leaving the root."""
    from cleannet import image_list

    paths = {}
    for row in image_list.iter_list_rows(list_path):
        paths[row.key] = (row.image_path, resolve_image_path(row.image_path, image_root, list_path, row.line,
                                                             allow_absolute=False))
    return paths


def thumbnail(path: str) -> np.ndarray | None:
    """The image at `path` scaled to THUMBNAIL_SIDE (uint8 [h, w, 3] BGR), or None if unreadable."""
    if not path or not os.path.isfile(path):
        return None
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    height, width = image.shape[:2]
    scale = THUMBNAIL_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)


def write_thumbnails(paths: dict[int, str | None], out_dir: str) -> dict[int, str | None]:
    """Writes a thumbnail per sample; returns {sample index: path relative to out_dir, or None
    for a missing or unreadable image}."""
    os.makedirs(os.path.join(out_dir, THUMBS_DIR), exist_ok=True)
    written = {}
    for index, path in sorted(paths.items()):
        image = thumbnail(path) if path else None
        if image is None:
            written[index] = None
            continue
        relative = "%s/%d.jpg" % (THUMBS_DIR, index)
        ok = cv2.imwrite(os.path.join(out_dir, relative), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        written[index] = relative if ok else None
    return written
