"""A stage's solver settings: a typed record, its defaults per (data set, stage), overrides.

`SolverSettings` holds what a Caffe solver prototxt and the stage's loss layers say: the
learning-rate schedule ("step" policy: base_lr · gamma^⌊iteration / stepsize⌋), momentum,
weight decay, the bias multipliers, batch sizes, the test / snapshot / display intervals
(in iterations), the loss weights and the noisy-label loss's update_noise_lr.

`default_settings(dataset, stage)` calls the stage's factory below; docs/noise_model.md
(section 3) lists the same values with where each comes from:
- cifar10: the original's CIFAR-10 schedule on Caffe's cifar10_quick solver (display
  100). bias_decay_mult 1 is our reading: cifar10_quick's prototxt sets no decay_mult on
  its biases and Caffe's default is 1.
- clothing1m: the original's Clothing1M schedule on bvlc_reference_caffenet's solver
  (display 20). bias_decay_mult 0 is our reading: that net gives its biases decay_mult 0;
  test_interval 1000 is our choice (that solver's value; the original gives none).
- digits (our choice): the CIFAR-10 solver with the CIFAR-10 learning rates, iteration
  counts scaled to the demo's data (about 290 clean, 1437 mixed training images) so that
  --stage=all takes a few minutes on 2 CPU cores, and shorter intervals.
- snapshot_interval is our choice everywhere; a snapshot is also written at max_iter.

Nothing here imports TensorFlow: the flags are resolved and checked before it loads.
"""

import dataclasses
import math
from typing import Callable, Mapping, Optional, Union

from noise_model.protocol import STAGE_NET, check_stage
from noisylabels.errors import InputError


@dataclasses.dataclass(frozen=True)
class SolverSettings:
    """One stage's solver and loss settings (fields in the order they are logged)."""
    base_lr: float            # learning rate at iteration 0
    stepsize: int             # lr × gamma every stepsize iterations
    max_iter: int             # the iteration training stops at
    gamma: float              # lr drop factor
    momentum: float           # in [0, 1)
    weight_decay: float       # L2 decay added to the gradient
    bias_lr_mult: float       # lr multiplier of biases (rank-1 variables)
    bias_decay_mult: float    # weight-decay multiplier of biases
    batch_size: int           # global training batch
    test_batch_size: int
    test_interval: int        # test every this many iterations (and at 0 and max_iter)
    snapshot_interval: int    # checkpoint every this many iterations (and at max_iter)
    display: int              # log the training means every this many iterations
    update_noise_lr: float    # noisy-label loss: gradient multiplier of the noise-type logits
    clean_loss_weight: float  # weight of the clean-label cross-entropy
    ntype_loss_weight: float  # weight of the noise-type cross-entropy
    noisy_loss_weight: float  # weight of the noisy-label loss

    def loss_weight(self, term: str) -> float:
        """The weight of a loss term ("clean_loss", "ntype_loss" or "noisy_label_loss")."""
        return {"clean_loss": self.clean_loss_weight, "ntype_loss": self.ntype_loss_weight,
                "noisy_label_loss": self.noisy_loss_weight}[term]


SETTING_NAMES = tuple(field.name for field in dataclasses.fields(SolverSettings))
_INT_SETTINGS = tuple(field.name for field in dataclasses.fields(SolverSettings) if field.type is int)

# With --stage=all these overrides concern the joint stages only (a single-net stage
# trains one cross-entropy of weight 1).
JOINT_ONLY_SETTINGS = ("update_noise_lr", "clean_loss_weight", "ntype_loss_weight", "noisy_loss_weight")

# Loss weights of the single-net stages; update_noise_lr has no effect there.
_CLEAN_NET_ONLY = dict(clean_loss_weight=1.0, ntype_loss_weight=0.0, noisy_loss_weight=0.0, update_noise_lr=1.0)
_NTYPE_NET_ONLY = dict(clean_loss_weight=0.0, ntype_loss_weight=1.0, noisy_loss_weight=0.0, update_noise_lr=1.0)
# The CIFAR-10 joint stage: every loss weight 1, update_noise_lr 1.
_CIFAR10_JOINT = dict(clean_loss_weight=1.0, ntype_loss_weight=1.0, noisy_loss_weight=1.0, update_noise_lr=1.0)


def _cifar10(**stage) -> SolverSettings:
    """Caffe's cifar10_quick solver with the stage's schedule and loss weights."""
    return SolverSettings(gamma=0.1, momentum=0.9, weight_decay=0.004, bias_lr_mult=2.0, bias_decay_mult=1.0,
                          batch_size=100, test_batch_size=100, test_interval=500, snapshot_interval=1000,
                          display=100, **stage)


def _digits(**stage) -> SolverSettings:
    """The CIFAR-10 solver with the demo's shorter intervals."""
    return dataclasses.replace(_cifar10(**stage), test_interval=250, snapshot_interval=500, display=50)


def _clothing1m(**stage) -> SolverSettings:
    """bvlc_reference_caffenet's solver with the stage's schedule and loss weights."""
    return SolverSettings(gamma=0.1, momentum=0.9, weight_decay=0.0005, bias_lr_mult=2.0, bias_decay_mult=0.0,
                          batch_size=128, test_batch_size=100, test_interval=1000, snapshot_interval=5000,
                          display=20, **stage)


def cifar10_clean() -> SolverSettings:
    return _cifar10(base_lr=0.001, stepsize=4000, max_iter=5000, **_CLEAN_NET_ONLY)


def cifar10_noisy_gt() -> SolverSettings:
    return _cifar10(base_lr=0.001, stepsize=4000, max_iter=6000, **_CLEAN_NET_ONLY)


def cifar10_ntype() -> SolverSettings:
    return _cifar10(base_lr=0.0001, stepsize=1000, max_iter=1500, **_NTYPE_NET_ONLY)


def cifar10_joint() -> SolverSettings:
    return _cifar10(base_lr=0.001, stepsize=4000, max_iter=6000, **_CIFAR10_JOINT)


def digits_clean() -> SolverSettings:
    """lr step at 5/6 of the stage (CIFAR-10: 4/5)."""
    return _digits(base_lr=0.001, stepsize=500, max_iter=600, **_CLEAN_NET_ONLY)


def digits_noisy_gt() -> SolverSettings:
    """lr step at 2/3 of the stage, as CIFAR-10's."""
    return _digits(base_lr=0.001, stepsize=600, max_iter=900, **_CLEAN_NET_ONLY)


def digits_ntype() -> SolverSettings:
    return _digits(base_lr=0.0001, stepsize=300, max_iter=450, **_NTYPE_NET_ONLY)


def digits_joint() -> SolverSettings:
    return _digits(base_lr=0.001, stepsize=600, max_iter=900, **_CIFAR10_JOINT)


def clothing1m_clean() -> SolverSettings:
    return _clothing1m(base_lr=0.001, stepsize=10000, max_iter=15000, **_CLEAN_NET_ONLY)


def clothing1m_ntype() -> SolverSettings:
    return _clothing1m(base_lr=0.001, stepsize=3000, max_iter=5000, **_NTYPE_NET_ONLY)


def clothing1m_joint() -> SolverSettings:
    """Stage 1: clean CE 0.1 + noisy-label loss 1, the noise-type net frozen (update_noise_lr 0)."""
    return _clothing1m(base_lr=0.001, stepsize=50000, max_iter=100000, clean_loss_weight=0.1,
                       ntype_loss_weight=0.0, noisy_loss_weight=1.0, update_noise_lr=0.0)


def clothing1m_joint_stage2() -> SolverSettings:
    """Stage 2: clean CE 1 + noise-type CE 0.1 + noisy-label loss 1, update_noise_lr 0.1.
    It continues stage 1's solver state (iteration 100000, the same lr policy)."""
    return _clothing1m(base_lr=0.001, stepsize=50000, max_iter=160000, clean_loss_weight=1.0,
                       ntype_loss_weight=0.1, noisy_loss_weight=1.0, update_noise_lr=0.1)


FACTORIES: Mapping[tuple, Callable[[], SolverSettings]] = {
    ("cifar10", "clean"): cifar10_clean,
    ("cifar10", "noisy_gt"): cifar10_noisy_gt,
    ("cifar10", "ntype"): cifar10_ntype,
    ("cifar10", "joint"): cifar10_joint,
    ("digits", "clean"): digits_clean,
    ("digits", "noisy_gt"): digits_noisy_gt,
    ("digits", "ntype"): digits_ntype,
    ("digits", "joint"): digits_joint,
    ("clothing1m", "clean"): clothing1m_clean,
    ("clothing1m", "ntype"): clothing1m_ntype,
    ("clothing1m", "joint"): clothing1m_joint,
    ("clothing1m", "joint_stage2"): clothing1m_joint_stage2,
}


def default_settings(dataset: str, stage: str) -> SolverSettings:
    """The defaults of one stage; InputError when the stage is not in the data set's protocol."""
    check_stage(dataset, stage)
    return FACTORIES[(dataset, stage)]()


_POSITIVE = ("base_lr", "stepsize", "batch_size", "test_batch_size", "test_interval", "snapshot_interval",
             "display")
_NON_NEGATIVE = ("max_iter", "gamma", "weight_decay", "bias_lr_mult", "bias_decay_mult", "update_noise_lr",
                 "clean_loss_weight", "ntype_loss_weight", "noisy_loss_weight")
_UNUSED_WEIGHTS = {"clean": ("ntype_loss_weight", "noisy_loss_weight"),
                   "ntype": ("clean_loss_weight", "noisy_loss_weight"), "joint": ()}
_NET_OF_WEIGHT = {"clean_loss_weight": "clean-label net", "ntype_loss_weight": "noise-type net",
                  "noisy_loss_weight": "joint model"}


def check_settings(settings: SolverSettings, stage: str) -> None:
    """Raises InputError naming the flag for a value out of range, a loss weight given to a
    net the stage does not train, or every loss weight 0."""
    for name in _POSITIVE:
        value = getattr(settings, name)
        if not (value > 0 and math.isfinite(value)):
            raise InputError("must be positive, got %s" % value, field="--%s" % name)
    for name in _NON_NEGATIVE:
        value = getattr(settings, name)
        if not (value >= 0 and math.isfinite(value)):
            raise InputError("must be a finite number >= 0, got %s" % value, field="--%s" % name)
    if not 0 <= settings.momentum < 1:
        raise InputError("must be in [0, 1), got %s" % settings.momentum, field="--momentum")
    for name in _UNUSED_WEIGHTS[STAGE_NET[stage]]:
        if getattr(settings, name) != 0:
            raise InputError("stage %s trains no %s; this weight must be 0" % (stage, _NET_OF_WEIGHT[name]),
                             field="--%s" % name)
    if not any(getattr(settings, name) > 0 for name in _NET_OF_WEIGHT):
        raise InputError("every loss weight is 0: nothing to train", field="--stage")


def resolve_settings(dataset: str, stage: str,
                     overrides: Optional[Mapping[str, Union[int, float, None]]] = None) -> SolverSettings:
    """The stage's defaults with the non-None entries of `overrides` (e.g. the solver flags)
    in place, checked by `check_settings`.

    Raises:
      InputError: naming the flag, for an unknown name or a value `check_settings` refuses.
    """
    changes = {}
    for name, value in (overrides or {}).items():
        if name not in SETTING_NAMES:
            raise InputError("unknown solver setting", field="--%s" % name)
        if value is not None:
            changes[name] = int(value) if name in _INT_SETTINGS else float(value)
    settings = dataclasses.replace(default_settings(dataset, stage), **changes)
    check_settings(settings, stage)
    return settings


def stage_overrides(stage: str, overrides: Mapping[str, Union[int, float, None]]) -> dict:
    """--stage=all: the overrides that apply to `stage` (loss weights and update_noise_lr
    reach the joint stages only)."""
    if STAGE_NET[stage] == "joint":
        return dict(overrides)
    return {name: value for name, value in overrides.items() if name not in JOINT_ONLY_SETTINGS}
