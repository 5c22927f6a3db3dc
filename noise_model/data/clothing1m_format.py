"""The prepared Clothing1M format, shared by its preparation tool and the input pipeline.

noise_model/data/clothing1m.py (the preparation) writes it and noise_model/data/datasets.py
reads it: `{split}.txt` lines "key clean noisy ntype", where a key is an image path
relative to the dataset root; images resized to RESIZE_SIZE², the mean image at that size,
training crops (and the network input) CROP_SIZE²; metadata.json's `on_bad_image` says
what the pipeline does with an image that fails to decode.
"""

import os
import re
from typing import Optional

from noisylabels.errors import InputError

NUM_CLASSES = 14
RESIZE_SIZE = 256
CROP_SIZE = 227
ON_BAD_IMAGE_CHOICES = ("stop", "skip")


def check_key(key: str, path: Optional[str] = None, line: Optional[int] = None) -> None:
    """Raises InputError unless `key` is a relative path that stays inside the root."""
    if (os.path.isabs(key) or key.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", key)):
        raise InputError("key '%s' is an absolute path; keys must be relative to the dataset "
                         "root" % key, path=path, line=line)
    if ".." in re.split(r"[\\/]", key):
        raise InputError("key '%s' has a '..' component; keys must stay inside the dataset "
                         "root" % key, path=path, line=line)
