"""Trains one stage (or every stage) of Xiao et al.'s noisy-label model, Caffe-style.

    python -m noise_model.train --dataset=cifar10 --stage=clean
        --data_dir=data/cifar10 --train_dir=train/cifar10/clean
    python -m noise_model.train --dataset=digits --stage=all
        --data_dir=data/digits --train_dir=train/digits
(one command each; docs/noise_model.md lists every stage's command, flag and default.)

Stages (defaults per data set and stage: noise_model/training/settings.py):
  clean         the clean-label net on "clean_train" with the clean label.
  noisy_gt      the baseline: from clean, on "mixed_train" with the clean label where
                there is one, else the noisy label.
  ntype         the noise-type net on "ntype_train"; tested on "ntype_test".
  joint         clean net + noise-type net on "mixed_train" with
                clean_loss_weight·CE(clean) + ntype_loss_weight·CE(noise type)
                + noisy_loss_weight·NoisyLabelLoss(clean logits, noise-type logits, ỹ).
  joint_stage2  (Clothing1M) continues joint's whole training state (weights, momentum,
                iteration count) with stage 2's loss weights and update_noise_lr.
  all           clean → noisy_gt → ntype → joint (Clothing1M: clean → ntype → joint →
                joint_stage2), each in train_dir/STAGE, then prints the results table.

The solver is Caffe's SGD (noise_model/training/solver.py); the order of tests, displays
and snapshots is Caffe's (noise_model/training/stage_task.py). Running the same command again resumes
from the latest checkpoint and sees exactly the batches an uninterrupted run sees. SIGTERM
writes a checkpoint at the current iteration and exits 0. TensorBoard summaries go to
train_dir. Flags and directories are checked before TensorFlow loads.

Distribution (--distribution=mirrored over GPUs or --num_cpu_replicas logical CPUs,
multi_worker from TF_CONFIG): --batch_size stays the global batch. Worker 0 (or the chief)
writes train_dir; other workers write their checkpoints to train_dir/.worker_TYPE_ID and
no TensorBoard logs.
"""

import dataclasses
import os
import sys
from typing import Any, Mapping, Optional

from absl import flags
from absl import logging

from noise_model.protocol import DATASETS, PIPELINES, STAGES
from noise_model.training import settings as settings_lib
from noisylabels import distribution
from noisylabels.console import load_tensorflow
from noisylabels.errors import InputError
from noisylabels.flagutil import define_finite_float, run_tool

FLAGS = flags.FLAGS

# The directories of earlier stages a stage may start from.
MODEL_DIR_FLAGS = ("clean_model_dir", "ntype_model_dir", "init_dir")


def _define_run_flags() -> None:
    flags.DEFINE_enum("dataset", None, list(DATASETS), "The prepared data set.", required=True)
    define_finite_float("noise_level", 0.5, "digits only: the synthetic noise level used when --data_dir holds no "
                        "prepared data yet and is prepared by this command (other data sets: see the prepare "
                        "tools).", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_enum("stage", None, list(STAGES) + ["all"], "The stage to train (joint_stage2: Clothing1M only), "
                      "or all: every stage of the data set's protocol in one process.", required=True)
    flags.DEFINE_string("data_dir", None, "The prepared data directory (written by noise_model.cifar10, "
                        "noise_model.clothing1m or noise_model.digits).", required=True)
    flags.DEFINE_string("train_dir", None, "This stage's checkpoints and TensorBoard logs (--stage=all: one "
                        "subdirectory per stage).", required=True)
    flags.DEFINE_string("clean_model_dir", None, "train_dir of the clean stage (the start of noisy_gt, ntype and "
                        "joint).")
    flags.DEFINE_string("ntype_model_dir", None, "train_dir of the ntype stage (the start of joint's noise-type "
                        "net).")
    flags.DEFINE_string("init_dir", None, "joint_stage2: train_dir of joint stage 1, whose whole training state is "
                        "continued.")
    flags.DEFINE_string("caffemodel_weights", None, "Optional Keras weights file (e.g. ImageNet CaffeNet converted "
                        "by noise_model.import_caffemodel) loaded by layer name and shape into the clean net (stage "
                        "clean) or the noise-type net (stage ntype, before the copy from the clean stage).")
    flags.DEFINE_integer("seed", 0, "Seed of the weight initialisation and the data order.", lower_bound=0)
    flags.DEFINE_enum("distribution", "none", list(distribution.DISTRIBUTIONS),
                      "none: one device; mirrored: all local GPUs (or --num_cpu_replicas logical CPU devices); "
                      "multi_worker: MultiWorkerMirroredStrategy, cluster from TF_CONFIG. --batch_size is the "
                      "global batch.")
    flags.DEFINE_integer("num_cpu_replicas", 0, "Without a GPU: split the CPU into this many logical devices (for "
                         "--distribution=mirrored on CPU).", lower_bound=0)
    flags.register_multi_flags_validator(
        ["dataset", "stage"], lambda v: v["stage"] in ("all",) + PIPELINES.get(v["dataset"], ()),
        message="--stage is not part of --dataset's protocol (cifar10, digits: clean, noisy_gt, ntype, joint; "
                "clothing1m: clean, ntype, joint, joint_stage2)")
    flags.register_multi_flags_validator(
        ["stage", "init_dir"], lambda v: v["stage"] != "joint_stage2" or bool(v["init_dir"]),
        message="--stage=joint_stage2 continues joint stage 1: give its train_dir as --init_dir")


def _define_solver_flags() -> None:
    """The solver flags; None means the data set's and stage's default (settings.py)."""
    define_finite_float("base_lr", None, "Base learning rate.", above=0.0)
    flags.DEFINE_integer("stepsize", None, "lr × gamma every stepsize iterations.", lower_bound=1)
    flags.DEFINE_integer("max_iter", None, "Iteration to train up to.", lower_bound=0)
    define_finite_float("gamma", None, "lr drop factor (default 0.1).", lower_bound=0.0)
    define_finite_float("momentum", None, "SGD momentum, in [0, 1) (default 0.9).", lower_bound=0.0)
    flags.register_validator("momentum", lambda value: value is None or value < 1.0, message="must be below 1")
    define_finite_float("weight_decay", None, "Weight decay added to the gradient (cifar10/digits 0.004, "
                        "clothing1m 0.0005).", lower_bound=0.0)
    define_finite_float("bias_lr_mult", None, "lr multiplier of biases (default 2).", lower_bound=0.0)
    define_finite_float("bias_decay_mult", None, "Weight-decay multiplier of biases (cifar10/digits 1, "
                        "clothing1m 0).", lower_bound=0.0)
    flags.DEFINE_integer("batch_size", None, "Training batch size (cifar10/digits 100, clothing1m 128).",
                         lower_bound=1)
    flags.DEFINE_integer("test_batch_size", None, "Test batch size (100).", lower_bound=1)
    flags.DEFINE_integer("test_interval", None, "Test every this many iterations (cifar10 500, digits 250, "
                         "clothing1m 1000).", lower_bound=1)
    flags.DEFINE_integer("snapshot_interval", None, "Checkpoint every this many iterations (cifar10 1000, "
                         "digits 500, clothing1m 5000).", lower_bound=1)
    flags.DEFINE_integer("display", None, "Log the training loss every this many iterations (cifar10 100, "
                         "digits 50, clothing1m 20).", lower_bound=1)
    define_finite_float("update_noise_lr", None, "Noisy-label loss: gradient multiplier for the noise-type logits "
                        "(joint: cifar10/digits 1; clothing1m 0, stage 2 0.1).", lower_bound=0.0)
    define_finite_float("clean_loss_weight", None, "Weight of the clean-label cross-entropy.", lower_bound=0.0)
    define_finite_float("ntype_loss_weight", None, "Weight of the noise-type cross-entropy.", lower_bound=0.0)
    define_finite_float("noisy_loss_weight", None, "Weight of the noisy-label loss.", lower_bound=0.0)


def define_flags() -> None:
    """Defines the command-line flags; called only when run as a tool, so that importing
    this module (tests, other tools) defines none."""
    _define_run_flags()
    _define_solver_flags()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The command's settings, one field per flag; `overrides` holds the solver flags (None: the data set's and
    stage's default, settings.py)."""

    dataset: str
    stage: str
    data_dir: str
    train_dir: str
    noise_level: float = 0.5
    clean_model_dir: Optional[str] = None
    ntype_model_dir: Optional[str] = None
    init_dir: Optional[str] = None
    caffemodel_weights: Optional[str] = None
    seed: int = 0
    distribution: str = "none"
    num_cpu_replicas: int = 0
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def config_from_flags() -> TrainConfig:
    """The parsed flags as a TrainConfig."""
    names = [field.name for field in dataclasses.fields(TrainConfig) if field.name != "overrides"]
    return TrainConfig(**{name: FLAGS[name].value for name in names},
                       overrides={name: FLAGS[name].value for name in settings_lib.SETTING_NAMES})


def _check_directories(config: TrainConfig) -> None:
    """Refuses a missing data directory (digits: prepared here instead), weights file or
    earlier stage's directory, before TensorFlow loads."""
    preparing_digits = config.dataset == "digits" and not os.path.exists(os.path.join(config.data_dir,
                                                                                      "metadata.json"))
    if not preparing_digits and not os.path.isdir(config.data_dir):
        raise InputError("not a directory", path=config.data_dir, field="--data_dir")
    if config.caffemodel_weights and not os.path.isfile(config.caffemodel_weights):
        raise InputError("file not found", path=config.caffemodel_weights, field="--caffemodel_weights")
    for flag in MODEL_DIR_FLAGS:
        value = getattr(config, flag)
        if value and config.stage != "all" and not os.path.isdir(value):
            raise InputError("not a directory: train that stage first (or point the flag at its --train_dir)",
                             path=value, field="--%s" % flag)


def _resolve_settings(config: TrainConfig) -> dict:
    """stage → SolverSettings for the stages this command runs (InputError naming a flag)."""
    stages = PIPELINES[config.dataset] if config.stage == "all" else (config.stage,)
    return {stage: settings_lib.resolve_settings(config.dataset, stage,
                                                 settings_lib.stage_overrides(stage, config.overrides)
                                                 if config.stage == "all" else config.overrides)
            for stage in stages}


def _prepare_digits_if_needed(config: TrainConfig) -> None:
    """The demo runs from one command: the digits ship with scikit-learn, so a data
    directory that holds no prepared data yet is prepared here."""
    if config.dataset == "digits" and not os.path.exists(os.path.join(config.data_dir, "metadata.json")):
        from noise_model.data.digits import prepare_digits

        logging.info("Preparing the digits data in %s (noise level %g).", config.data_dir, config.noise_level)
        prepare_digits(config.data_dir, noise_level=config.noise_level, seed=config.seed)


def train(config: TrainConfig) -> int:
    """Trains what `config` says (after _check_directories); prints the results table of --stage=all."""
    settings = _resolve_settings(config)
    load_tensorflow()  # lists the physical devices only: the CPU can still be split below
    distribution.split_cpu(config.num_cpu_replicas)
    _prepare_digits_if_needed(config)
    from noise_model.training import stage_runner

    strategy = distribution.make_strategy(config.distribution)
    if config.stage == "all":
        _, table = stage_runner.run_all(config.dataset, config.data_dir, config.train_dir, dict(config.overrides),
                                        seed=config.seed, caffemodel_weights=config.caffemodel_weights,
                                        strategy=strategy)
        if table is not None:
            print(table)
            sys.stdout.flush()
        return 0
    stage_config = stage_runner.StageConfig(
        dataset=config.dataset, stage=config.stage, data_dir=config.data_dir, train_dir=config.train_dir,
        settings=settings[config.stage], seed=config.seed, clean_model_dir=config.clean_model_dir,
        ntype_model_dir=config.ntype_model_dir, init_dir=config.init_dir,
        caffemodel_weights=config.caffemodel_weights)
    stage_runner.run_stage(stage_config, strategy)
    return 0


def main(argv) -> int:
    if len(argv) > 1:
        raise InputError("unexpected arguments: %s" % " ".join(argv[1:]))
    config = config_from_flags()
    _check_directories(config)
    return train(config)


def run() -> None:
    """Console entry point (`noise-model-train`)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
