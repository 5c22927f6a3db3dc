"""CleanNet (Lee et al., CVPR 2018) in TensorFlow 2 / Keras.

The Python API (docs/api.md) is imported on first use, so `import cleannet` stays light:

    cleannet.find_label_issues(features, labels, verified=verified)  -> pandas.DataFrame
    cleannet.CleanNet(...).fit(...) / CleanNet.load(...), .calibrate(...), .score(...)
    cleannet.label_issue_summary(table)                              -> per-class DataFrame
    cleannet.ModelConfig                                             (stored with every checkpoint)
"""

import importlib
from typing import Any

_LAZY = {"find_label_issues": "cleannet.api", "CleanNet": "cleannet.api", "label_issue_summary": "cleannet.api",
         "ModelConfig": "cleannet.model_config"}

__all__ = ["CleanNet", "ModelConfig", "find_label_issues", "label_issue_summary"]  # = the keys of _LAZY


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError("module 'cleannet' has no attribute %r" % name)
