"""CleanNet's per-sample weights for the classifier: inference.py's --output_weights file, joined by key."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from noisylabels.errors import InputError
from noisylabels.unique_keys import UniqueKeys

WEIGHTINGS = ("none", "soft", "hard")
WEIGHTS_HEADER = ["key", "class_name", "soft_weight", "hard_weight"]


def read_weights(path: str) -> dict:
    """Reads inference.py's --output_weights TSV. Returns {key: (class_name, soft, hard)}."""
    from noisylabels.fileio import iter_text_lines
    from noisylabels.strict_numbers import parse_float

    weights, seen = {}, UniqueKeys(path)
    for line_no, line in iter_text_lines(path, field="--weights_file"):
        fields = line.split("\t")
        if line_no == 1:
            if fields != WEIGHTS_HEADER:
                raise InputError("expected the header %s (inference.py --output_weights)"
                                 % "\\t".join(WEIGHTS_HEADER), path=path, line=1)
            continue
        if fields == [""]:
            continue
        if len(fields) != 4:
            raise InputError("expected 4 tab-separated columns, found %d" % len(fields), path=path, line=line_no)
        key, name, soft, hard = fields
        soft = parse_float(soft, path, line_no, "soft_weight")
        hard = parse_float(hard, path, line_no, "hard_weight")
        if soft < 0 or hard < 0:
            raise InputError("weights must be non-negative", path=path, line=line_no)
        seen.add(key, line_no)
        weights[key] = (name, soft, hard)
    return weights


def sample_weights(keys: Sequence[str], labels, class_names: Sequence[str], weighting: str,
                   weights_file: str | None = None) -> np.ndarray:
    """Per-sample weights float32 [N] for `weighting`, joined by key from weights_file."""
    if weighting not in WEIGHTINGS:
        raise InputError("must be one of %s, got %r" % ("|".join(WEIGHTINGS), weighting), field="--weighting")
    if weighting == "none":
        return np.ones(len(keys), np.float32)
    if not weights_file:
        raise InputError("--weighting=%s needs --weights_file" % weighting, field="--weights_file")
    table = read_weights(weights_file)
    column = 1 if weighting == "soft" else 2
    out = np.empty(len(keys), np.float32)
    for i, (key, label) in enumerate(zip(keys, labels)):
        if key not in table:
            raise InputError("no weight for training key %r" % key, path=weights_file, field="key")
        entry = table[key]
        if entry[0] != class_names[label]:
            raise InputError("key %r has class %r here but %r in the training data"
                             % (key, entry[0], class_names[label]), path=weights_file, field="class_name")
        out[i] = entry[column]
    if not out.sum() > 0:
        raise InputError("every training sample has weight 0", path=weights_file)
    return out
