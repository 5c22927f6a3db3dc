"""Runs a noisy-label stage (or every stage of a protocol) in its train_dir.

`run_stage` owns one stage's run: it reads the prepared data's metadata, claims the
train_dir (noisylabels.run_directory.RunDirectory: lock, run record, checkpoints), starts the
model (the train_dir's latest checkpoint; joint_stage2: joint stage 1's whole state;
otherwise the earlier stages' weights, stage_files.initialize_stage), runs the shared
training loop on a `StageTask` to max_iter, then writes final.json. `run_all` runs the
data set's stages in order, each in train_dir/STAGE, and writes the results table.
"""

import os
from typing import Dict, Optional, Tuple

import tensorflow as tf
from absl import logging

from noise_model.data import datasets
from noise_model.training import results
from noise_model.training import settings as settings_lib
from noise_model.training import stage_files
from noise_model.training import summaries
from noise_model.protocol import ARRAY_DATASETS, PIPELINES, STAGE_NET, TRAIN_SPLIT
from noise_model.training.stage_task import StageConfig, StageTask
from noisylabels import distribution
from noisylabels.errors import InputError, check_flag
from noisylabels.fileio import atomic_open
from noisylabels.run_directory import RunDirectory
from noisylabels.run_record import make_record
from noisylabels.training_loop import TrainingLoop, summary_writers

MAX_CHECKPOINTS_TO_KEEP = 5

__all__ = ["StageConfig", "run_stage", "run_all"]


def run_record(cfg: StageConfig) -> dict:
    """What the run trains on: the prepared files it reads and the seed of its data order."""
    split = TRAIN_SPLIT[cfg.stage]
    names = ["metadata.json", "mean_image.npy"]
    names += ["%s_images.npy" % split, "%s_labels.npy" % split] if cfg.dataset in ARRAY_DATASETS \
        else ["%s.txt" % split]
    if STAGE_NET[cfg.stage] == "joint":
        names.append("matrix_c.npy")
    files = {name: os.path.join(cfg.data_dir, name) for name in names}
    return make_record(files, {"dataset": cfg.dataset, "stage": cfg.stage, "seed": cfg.seed})


def _log_settings(cfg: StageConfig, num_classes: int, image_size: int) -> None:
    logging.info("Stage %s on %s (%d classes, %d×%d input), train_dir %s", cfg.stage, cfg.dataset, num_classes,
                 image_size, image_size, cfg.train_dir)
    for name in settings_lib.SETTING_NAMES:
        logging.info("    %s: %s", name, getattr(cfg.settings, name))


def _continue_stage1(cfg: StageConfig, task: StageTask, num_classes: int) -> None:
    """joint_stage2: restores joint stage 1's model, momentum and iteration count."""
    check_flag(cfg.init_dir, "init_dir", "joint_stage2 continues joint stage 1: give its train_dir")
    info = stage_files.read_stage_info(cfg.init_dir, "init_dir")
    if info is None or info["stage"] != "joint" or info["dataset"] != cfg.dataset \
            or int(info["num_classes"]) != num_classes:
        raise InputError("is not the train_dir of a %s joint (stage 1) run" % cfg.dataset,
                         path=cfg.init_dir, field="--init_dir")
    path, iteration, finished = stage_files.find_checkpoint(cfg.init_dir, "init_dir")
    if not finished:
        logging.warning("%s has not finished (no %s); continuing its latest checkpoint", cfg.init_dir,
                        stage_files.FINAL_FILE)
    task.restore(path, "init_dir")
    logging.info("Continuing joint stage 1's state from %s (iteration %d)", path, iteration)


def _start(cfg: StageConfig, task: StageTask, run_dir: RunDirectory, num_classes: int, image_size: int) -> bool:
    """Restores the train_dir's newest readable checkpoint, else starts the stage from the
    earlier stages. Returns True when resumed from the train_dir."""
    latest = run_dir.restore_latest(task.restore)
    if latest:
        logging.info("Resuming from %s", latest)
        return True
    if cfg.stage == "joint_stage2":
        _continue_stage1(cfg, task, num_classes)
    else:
        stage_files.initialize_stage(cfg.stage, cfg.dataset, task.model, num_classes, image_size,
                                     clean_model_dir=cfg.clean_model_dir, ntype_model_dir=cfg.ntype_model_dir,
                                     caffemodel_weights=cfg.caffemodel_weights, log=logging.info)
    return False


def _train(cfg: StageConfig, task: StageTask, run_dir: RunDirectory, resumed: bool,
           writer) -> Optional[Dict[str, float]]:
    """Trains from the task's iteration to max_iter in Caffe's order of events; snapshots
    and tests at max_iter. Returns the final metrics, or None when SIGTERM stopped it."""
    s = cfg.settings
    start_step = task.step
    if task.matrix_c is not None and not resumed:
        with writer.as_default():
            summaries.write_matrix_c(task.matrix_c, start_step)
    logging.info("Training %s from iteration %d to %d on %s (seed %d, %d replica(s))", cfg.stage, start_step,
                 s.max_iter, TRAIN_SPLIT[cfg.stage], cfg.seed, task.replicas)
    loop = TrainingLoop(task, run_dir, end_step=s.max_iter, validate_every=s.test_interval,
                        save_every=s.snapshot_interval, step_name="iteration")
    if not resumed and start_step % s.test_interval == 0 and start_step < s.max_iter:
        loop.validate(start_step)  # a resumed run was tested here before its snapshot
    if not loop.run():
        return None
    step = task.step
    if run_dir.latest is None or stage_files.checkpoint_iteration(run_dir.latest) != step:
        task.on_saved(step, run_dir.save(step))
    metrics = loop.metrics if step > start_step else task.validate(step)
    stage_files.write_final(run_dir.directory, run_dir.latest, step, metrics)
    logging.info("Optimization done: stage %s, iteration %d, %s", cfg.stage, step,
                 ", ".join("%s = %.4f" % item for item in sorted(metrics.items())))
    return metrics


def run_stage(cfg: StageConfig, strategy=None) -> Optional[Dict[str, float]]:
    """Trains one stage to its max_iter, resuming from train_dir's latest checkpoint.

    Args:
      cfg: the stage's config with resolved settings (settings.resolve_settings).
      strategy: a tf.distribute strategy (noisylabels.distribution.make_strategy); None: one device.

    Returns:
      The final test metrics: tag ("test/accuracy", "test/loss", and on Clothing1M
      "val/accuracy", "val/loss") → float; None when SIGTERM stopped the run (after a
      checkpoint at the current iteration).

    Raises:
      InputError: bad data directory, train_dir, model directories or batch size.
      TrainingError: the loss became NaN or infinite.
    """
    strategy = strategy or tf.distribute.get_strategy()
    metadata = datasets.read_metadata(cfg.data_dir)
    if metadata["dataset"] != cfg.dataset:
        raise InputError("holds prepared %s data, not %s" % (metadata["dataset"], cfg.dataset), path=cfg.data_dir,
                         field="--data_dir")
    num_classes, image_size = int(metadata["num_classes"]), int(metadata["image_size"])
    info = {"dataset": cfg.dataset, "stage": cfg.stage, "net": STAGE_NET[cfg.stage], "num_classes": num_classes,
            "image_size": image_size}
    stage_files.check_stage_dir(cfg.train_dir, info)
    _log_settings(cfg, num_classes, image_size)
    task = StageTask(cfg, num_classes, image_size, strategy)
    run_dir = RunDirectory(cfg.train_dir, task.checkpoint, strategy, max_to_keep=MAX_CHECKPOINTS_TO_KEEP,
                           checkpoint_name=stage_files.CHECKPOINT_PREFIX)
    with run_dir:
        run_dir.check_record(run_record(cfg))
        resumed = _start(cfg, task, run_dir, num_classes, image_size)
        stage_files.write_stage_info(run_dir.directory, info)
        final = stage_files.read_final(run_dir.directory)
        step = task.step
        if final and final.get("iteration") == step and step >= cfg.settings.max_iter and final.get("metrics"):
            logging.info("Stage %s already finished at iteration %d (%s)", cfg.stage, step,
                         os.path.join(run_dir.directory, stage_files.FINAL_FILE))
            return final["metrics"]
        stage_files.remove_final(run_dir.directory)
        writers = summary_writers(run_dir.directory, ("",), task.is_chief)
        task.start(writers[""])
        try:
            return _train(cfg, task, run_dir, resumed, writers[""])
        finally:
            writers[""].close()


def stage_configs(dataset: str, data_dir: str, train_dir: str, overrides: dict, seed: int = 0,
                  caffemodel_weights: Optional[str] = None) -> list:
    """The StageConfig of each stage of the data set's protocol, each in train_dir/STAGE."""
    configs = []
    for stage in PIPELINES[dataset]:
        configs.append(StageConfig(
            dataset=dataset, stage=stage, data_dir=data_dir, train_dir=os.path.join(train_dir, stage),
            settings=settings_lib.resolve_settings(dataset, stage, settings_lib.stage_overrides(stage, overrides)),
            seed=seed, clean_model_dir=os.path.join(train_dir, "clean"),
            ntype_model_dir=os.path.join(train_dir, "ntype"), init_dir=os.path.join(train_dir, "joint"),
            caffemodel_weights=caffemodel_weights if stage == "clean" else None))
    return configs


def run_all(dataset: str, data_dir: str, train_dir: str, overrides: dict, seed: int = 0,
            caffemodel_weights: Optional[str] = None, strategy=None) -> Tuple[dict, Optional[str]]:
    """Runs every stage of the data set's protocol in train_dir/STAGE; writes results.txt.

    Args:
      overrides: setting name → value or None (the solver flags); the loss weights and
        update_noise_lr apply to the joint stages only.

    Returns:
      `(metrics_by_stage, table)`; `(metrics so far, None)` when SIGTERM stopped a stage.
    """
    metrics_by_stage = {}
    for cfg in stage_configs(dataset, data_dir, train_dir, overrides, seed, caffemodel_weights):
        metrics = run_stage(cfg, strategy)
        if metrics is None:
            return metrics_by_stage, None
        metrics_by_stage[cfg.stage] = metrics
    table = results.format_results_table(dataset, metrics_by_stage)
    if strategy is None or distribution.is_chief(strategy):
        with atomic_open(os.path.join(train_dir, results.RESULTS_FILE)) as f:
            f.write(table + "\n")
    return metrics_by_stage, table
