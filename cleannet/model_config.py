"""The settings that fix a CleanNet model's shape and inputs, stored with every checkpoint.

`ModelConfig` is written into each checkpoint (as variables of the tf.train.Checkpoint,
cleannet.checkpoints.make_checkpoint) and into the inference file beside it
(cleannet.checkpoints.INFERENCE_FILE). Inference, export and `cleannet.CleanNet.load`
read it back, so --img_dim, --num_ref and --embed_norm need not be repeated; a value
given that disagrees with the checkpoint is refused with one line (`check_given`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from cleannet.choices import EMBED_NORMS
from noisylabels.errors import InputError

FIELDS = ("img_dim", "num_ref", "embed_norm")
# The original tools' defaults of these flags: what a checkpoint that records none was made with.
ORIGINAL_DEFAULTS = {"img_dim": 2048, "num_ref": 32, "embed_norm": "log"}


def canonical_embed_norm(embed_norm: str) -> str:
    """'l2_norm' (the original help text) and 'l2norm' (its code) are the same setting."""
    return "l2norm" if embed_norm == "l2_norm" else embed_norm


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What fixes a CleanNet's weights and inputs.

    img_dim: feature dimension h of every query and reference (2048 for ResNet-50 pool5).
    num_ref: references per class R (rows of ref.npy per class).
    embed_norm: the feature normalisation, "log" | "l2norm" | "no_norm" (l2_norm is stored
      as l2norm).
    """
    img_dim: int
    num_ref: int
    embed_norm: str

    def __post_init__(self) -> None:
        for name in ("img_dim", "num_ref"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError("%s must be a positive integer, got %r" % (name, value))
        if self.embed_norm not in EMBED_NORMS:
            raise ValueError("embed_norm must be one of %s, got %r" % ("|".join(EMBED_NORMS), self.embed_norm))
        object.__setattr__(self, "embed_norm", canonical_embed_norm(self.embed_norm))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: str) -> ModelConfig:
        """Parses to_json's text; InputError naming `path` when it is not a model configuration."""
        try:
            values = json.loads(text)
            return cls(**{name: values[name] for name in FIELDS})
        except (ValueError, TypeError, KeyError) as err:
            raise InputError("not a CleanNet model configuration (%s)" % err, path=path, field="model_config") from None

    @classmethod
    def resolve(cls, stored: Mapping[str, Any], given: Mapping[str, Any], path: str,
                fallback: Mapping[str, Any] | None = None) -> ModelConfig:
        """The stored configuration, checked against the values a caller gave.

        Args:
          stored: {field: value or None (not stored: an older checkpoint)}.
          given: {field: value or None (not given)}; one that disagrees with a stored value
            is an InputError (`check_given`).
          path: the checkpoint, named in errors.
          fallback: values for fields neither stored nor given (e.g. a tool's flag
            defaults); a field without any value is an InputError asking for it.
        """
        check_given(stored, given, path)
        values = {}
        for name in FIELDS:
            candidates = [stored.get(name), given.get(name), (fallback or {}).get(name)]
            value = next((v for v in candidates if v is not None), None)
            if value is None:
                raise InputError("the checkpoint does not record %s; pass --%s" % (name, name), path=path,
                                 field="--%s" % name)
            values[name] = value
        return cls(**values)


def given_flags(flag_values: Any) -> dict[str, Any]:
    """{field: value} of --img_dim, --num_ref, --embed_norm as given on a tool's command line
    (None: left out). flag_values: the tool's absl FLAGS, passed by its entry function."""
    return {name: flag_values[name].value if flag_values[name].present else None for name in FIELDS}


def check_given(stored: Mapping[str, Any], given: Mapping[str, Any], path: str) -> None:
    """InputError when a value given (not None) disagrees with the stored one (not None)."""
    for name in FIELDS:
        want, have = given.get(name), stored.get(name)
        if name == "embed_norm" and want is not None:
            want = canonical_embed_norm(want)
        if want is not None and have is not None and want != have:
            raise InputError("the checkpoint was made with %s=%s but --%s=%s; pass --%s=%s or use "
                             "another checkpoint" % (name, have, name, want, name, have),
                             path=path, field="--%s" % name)
