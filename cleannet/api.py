"""CleanNet from Python: `find_label_issues` in one call, and the `CleanNet` model object.

    import cleannet
    issues = cleannet.find_label_issues(features, labels, verified=verified)   # a DataFrame

Both run the method of the command-line tools on arrays, through the same code:
references by k-means per class (cleannet.tools.find_reference), training
(cleannet.trainer.train, writing the run directory train.py writes: checkpoints, best/,
TensorBoard logs, lock and run record), calibration of the relative decision
(cleannet.calibration) and scoring of every sample against every class
(cleannet.scoring, cleannet.decision), the results in the columns of inference.py's tsv
output (cleannet.outputs). docs/api.md describes the run directory and the settings.

By default both use the recommended pair: train.py's --recipe=robust (cross-class
negatives, L2-normalised features) and the relative decision, calibrated and scored with
the recipe's class score (cleannet.config.RECIPES; "neighbours" for robust, a k-NN vote
among the run's all-samples bank, all.npy). recipe="paper" with decision="threshold" is
the paper's method.

Nothing here imports TensorFlow until training or a checkpoint without an inference
file needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from absl import logging

from cleannet import api_inputs
from cleannet.calibration import Calibration
from cleannet.choices import DEFAULT_CLASS_SCORE
from cleannet.config import RECIPES, TrainConfig
from cleannet.decision import RelativeDecision, ThresholdDecision
from cleannet.model_config import ModelConfig
from noisylabels.errors import InputError

__all__ = ["CleanNet", "find_label_issues", "label_issue_summary"]

DATA_SUBDIR, CHECKPOINT_SUBDIR, LOG_SUBDIR = "data", "checkpoints", "log"
CLASS_LIST = "classes.txt"
RECOMMENDED_RECIPE = "robust"  # with the relative decision: the recommended pair (train.py --recipe)
THRESHOLD = 0.1  # the paper's similarity threshold (train.py / inference.py --val_sim_thres)
# Rows per matrix product when scoring: inference.py's default --batch_size, so that the
# scores round exactly as the tool's.
SCORE_BATCH = 64


class CleanNet:
    """A CleanNet label-noise detector on feature arrays (scikit-learn style).

    Args (all optional; None: chosen from the data size by `fit`, logged):
      num_ref, n_step, batch_size_sup, batch_size_unsup, val_batch_size, embed_norm: as
        train.py's flags of the same names (embed_norm None: the recipe's, else chosen).
      recipe: train.py's --recipe, "robust" (recommended, the default) or "paper".
      seed: seeds the validation split, k-means and training.
      train_overrides: further cleannet.config.TrainConfig fields (e.g. learning_rate,
        dropout_rate), passed to training as they are.

    After `fit` or `load`: `config` (ModelConfig), `references` (float32 [C, R, D]),
    `class_names`, `calibration` (the relative decision's, or None), `class_score` (the
    one it is calibrated and scored with), `bank` ((features float32 [N, D], class ids
    int32 [N]): the training samples of the "neighbours" class score, or None) and
    `checkpoint`.
    """

    def __init__(self, *, num_ref: int | None = None, n_step: int | None = None,
                 batch_size_sup: int | None = None, batch_size_unsup: int | None = None,
                 val_batch_size: int | None = None, embed_norm: str | None = None,
                 recipe: str = RECOMMENDED_RECIPE, seed: int = 0,
                 train_overrides: Mapping[str, Any] | None = None) -> None:
        if recipe not in RECIPES:
            raise InputError("must be one of %s, got %r" % ("|".join(RECIPES), recipe), field="recipe")
        self.settings = dict(num_ref=num_ref, n_step=n_step, batch_size_sup=batch_size_sup,
                             batch_size_unsup=batch_size_unsup, val_batch_size=val_batch_size, embed_norm=embed_norm)
        self.recipe = recipe
        self.class_score = RECIPES[recipe].class_score
        self.bank: tuple[np.ndarray, np.ndarray] | None = None
        self.seed = int(seed)
        self.train_overrides = dict(train_overrides or {})
        self.model = None  # cleannet.numpy_model.NumpyCleanNet
        self.references: np.ndarray | None = None
        self.class_names: list[str] | None = None
        self.calibration: Calibration | None = None
        self.checkpoint: str | None = None

    @property
    def config(self) -> ModelConfig:
        """The model configuration (img_dim, num_ref, embed_norm) of the fitted or loaded model."""
        self._require_model()
        return self.model.config

    def _require_model(self) -> None:
        if self.model is None:
            raise ValueError("no model yet: call fit(...) or CleanNet.load(...) first")

    # -- training --------------------------------------------------------------------------

    def fit(self, features: Any, labels: Any, *, verified: Any, run_dir: str,
            class_names: Sequence[str] | None = None) -> CleanNet:
        """Trains on the arrays; writes the run into `run_dir` (train.py's layout, see docs/api.md).

        Args:
          features: [N, D] numbers (NumPy array or DataFrame).
          labels: [N] class indices, or class names (see class_names).
          verified: [N] 1 = label verified correct, 0 = verified wrong, -1 = not verified.
          run_dir: the run directory (created; an existing run there is resumed only with the
            same data and settings, else refused).
          class_names: the C class names by index (default: from the labels).

        Raises:
          InputError (one line) for bad input, before any training.
        """
        features = api_inputs.check_features(features)
        class_ids, names = api_inputs.check_labels(labels, len(features), class_names)
        flags = api_inputs.check_verified(verified, len(features))
        train, val = api_inputs.split_verified(flags, self.seed)
        pool = np.setdiff1d(np.arange(len(features)), val)  # unverified batches and references
        recipe = RECIPES[self.recipe]
        settings = api_inputs.choose_settings(features, class_ids, len(names), len(train), len(val), pool,
                                              self.settings, recipe.embed_norm)
        from cleannet import datafiles

        datafiles.refuse_negative_for_log(features, None, settings.embed_norm)
        api_inputs.check_recipe(self.recipe, len(names), class_ids[pool])
        references = _find_references(features[pool], class_ids[pool], names, settings.num_ref, self.seed)
        data = _data_files(features, class_ids, flags, train, val, pool, references)
        run_dir = os.path.abspath(run_dir)
        config = self._train_config(run_dir, settings, features.shape[1])
        _write_run_data(run_dir, data, names)
        from cleannet.trainer import train as train_model  # TensorFlow loads here

        result = train_model(config)
        logging.info("CleanNet trained to step %d, best val/acc %.4f.", result["step"], result["best_val_acc"])
        bank = (data["all.npy"][:, :-1], data["all.npy"][:, -1].astype(np.int32))
        # With train.py's calibration of the best model on val (made with the recipe's class score).
        self._load_model(_best_or_latest(os.path.join(run_dir, CHECKPOINT_SUBDIR)), references, names, bank,
                         recipe.class_score, recipe.class_score)
        if self.calibration is None and len(names) >= 2:
            try:
                self.calibrate(features[val], class_ids[val], verified=flags[val])
            except InputError as err:  # as train.py: the model is kept, without a calibration
                logging.warning("No calibration of the relative decision: %s", err)
        return self

    def _train_config(self, run_dir: str, settings: api_inputs.Settings, img_dim: int) -> TrainConfig:
        """train.py's TrainConfig for this run: the chosen settings, then train_overrides."""

        values = dict(data_dir=os.path.join(run_dir, DATA_SUBDIR),
                      checkpoint_dir=os.path.join(run_dir, CHECKPOINT_SUBDIR), log_dir=os.path.join(run_dir, LOG_SUBDIR),
                      img_dim=img_dim, seed=self.seed, class_list=os.path.join(run_dir, CLASS_LIST),
                      recipe=self.recipe, **dataclasses.asdict(settings))
        unknown = sorted(set(self.train_overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
        if unknown:
            raise InputError("unknown TrainConfig fields %s" % ", ".join(unknown), field="train_overrides")
        values.update(self.train_overrides)
        return TrainConfig(**values)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, checkpoint_dir: str, *, references: Any = None, class_names: Sequence[str] | None = None,
             bank: Any = None) -> CleanNet:
        """A trained model: a run directory written by `fit` (its best model, references,
        class names and bank), or a train.py checkpoint directory with `references` (float32
        [C, R, D] or the path of ref.npy) and optionally `class_names` and `bank`.

        bank: the labelled samples of the "neighbours" class score: the path of an all.npy
          (read only when that class score is in use), or (features [N, D], class ids
          [N]); None: the run's data/all.npy, or the all.npy beside `references` when that
          is a path and the file exists.

        The relative decision's calibration (and with it the class score) is read from the
        checkpoint directory's calibration.json when it was made for this checkpoint;
        without one the class score is that of the run's recipe (run.json), else
        "references".
        """
        from cleannet import datafiles, tsv_reader

        class_score = DEFAULT_CLASS_SCORE
        run_data = os.path.join(checkpoint_dir, DATA_SUBDIR)
        if references is None and os.path.isfile(os.path.join(run_data, "ref.npy")):  # a run directory of `fit`
            references = os.path.join(run_data, "ref.npy")
            class_names = class_names or tsv_reader.read_class_list(os.path.join(checkpoint_dir, CLASS_LIST))
            class_score = _recipe_class_score(os.path.join(checkpoint_dir, CHECKPOINT_SUBDIR))
            checkpoint_dir = _best_or_latest(os.path.join(checkpoint_dir, CHECKPOINT_SUBDIR))
        if references is None:
            raise InputError("is not a run directory of CleanNet.fit; pass references= (ref.npy or its array)",
                             path=checkpoint_dir, field="references")
        if isinstance(references, (str, os.PathLike)):
            beside = os.path.join(os.path.dirname(os.fspath(references)), "all.npy")
            bank = beside if bank is None and os.path.isfile(beside) else bank
            references = datafiles.load_ref(os.fspath(references), None, None)
        instance = cls()
        instance._load_model(checkpoint_dir, np.asarray(references, np.float32), class_names, bank, None, class_score)
        return instance

    def _load_model(self, checkpoint_dir: str, references: np.ndarray, names: Sequence[str] | None, bank: Any,
                    calibrated_with: str | None, class_score: str) -> None:
        """Loads the checkpoint, its references, names and bank, and the calibration made for it
        with the class score `calibrated_with` (None: whichever); class_score: the one used
        when there is no calibration."""
        from cleannet.calibration import read_calibration
        from cleannet.checkpoints import load_inference_model

        model, step, path = load_inference_model(checkpoint_dir)
        if references.ndim != 3 or references.shape[1:] != (model.num_ref, model.img_dim):
            raise InputError("have shape %s, expected [C, %d, %d] (num_ref, img_dim of the checkpoint)"
                             % (references.shape, model.num_ref, model.img_dim), field="references")
        names = [str(n) for n in names] if names is not None else [str(c) for c in range(len(references))]
        if len(names) != len(references):
            raise InputError("has %d names but the references have %d classes" % (len(names), len(references)),
                             field="class_names")
        self.model, self.references, self.class_names, self.checkpoint = model, references, names, path
        try:
            self.calibration = read_calibration(checkpoint_dir, path, calibrated_with, "CleanNet.calibrate(...)")
        except InputError:
            self.calibration = None
        self.class_score = self.calibration.class_score if self.calibration else class_score
        if isinstance(bank, (str, os.PathLike)):  # an all.npy, read only when its class score is in use
            bank = _read_bank(os.fspath(bank)) if self.class_score == "neighbours" else None
        self.bank = None if bank is None else api_inputs.check_bank(bank, model.img_dim, len(names))
        logging.info("CleanNet model of step %d loaded from %s (class score %s).", step, path, self.class_score)

    # -- calibration and scoring ---------------------------------------------------------------

    def calibrate(self, features: Any, labels: Any, *, verified: Any, class_score: str | None = None) -> Calibration:
        """Chooses the relative decision's margin on verified samples (flags 1 / 0; -1 rows are
        skipped), with `class_score` (None: the model's `class_score`, the recipe's:
        "neighbours" for robust, against `bank`). Kept in `calibration` (not written to
        disk), and its class score becomes the model's. Returns it."""
        from cleannet.calibration import calibrate_model

        self._require_model()
        class_score = class_score or self.class_score
        features = api_inputs.check_features(features)
        class_ids, _ = api_inputs.check_labels(labels, len(features), self.class_names)
        flags = api_inputs.check_verified(verified, len(features))
        keep = flags >= 0
        self.calibration = calibrate_model(self.model, self.references, features[keep], class_ids[keep],
                                           flags[keep].astype(np.float32), self.checkpoint or "", class_score,
                                           bank=self._bank_for(class_score))
        self.class_score = class_score
        logging.info("Relative decision calibrated (class score %s): label wrong when margin < %.6g (val error "
                     "%.4f, %d samples).", class_score, self.calibration.min_margin, self.calibration.val_error,
                     self.calibration.val_samples)
        return self.calibration

    def score(self, features: Any, labels: Any, *, decision: str | ThresholdDecision | RelativeDecision = "relative",
              class_score: str | None = None, batch_size: int = SCORE_BATCH) -> pd.DataFrame:
        """Scores every sample against every class.

        Args:
          features: [N, D]; labels: [N] class indices or names (of `class_names`).
          decision: "relative" (the calibrated margin; needs `calibration`), "threshold"
            (similarity >= 0.1, the paper's) or a cleannet.decision object.
          class_score: how the other classes are scored (cleannet.scoring.CLASS_SCORES);
            None: as inference.py without --class_score: the calibration's for the relative
            decision, "references" for the threshold decision. "neighbours" votes among the
            training samples' bank (`bank`: the run's all.npy), not among these features.

        Returns:
          DataFrame, one row per sample in input order (index: that of a pandas input, else
          0..N-1), with the columns of inference.py's tsv output after key and url
          (class_name, similarity, verdict, best_other_class, best_other_similarity, margin,
          suggested_class) and `weight` = max(0, similarity), the paper's soft sample weight.
        """
        from cleannet.scoring import ClassEmbeddingScorer

        self._require_model()
        array = api_inputs.check_features(features)
        if array.shape[1] != self.model.img_dim:
            raise InputError("has %d columns, expected img_dim=%d (the model's)" % (array.shape[1], self.model.img_dim),
                             field="features")
        class_ids, _ = api_inputs.check_labels(labels, len(array), self.class_names)
        chosen = self._decision(decision)
        if class_score is None:
            class_score = self.class_score if isinstance(chosen, RelativeDecision) else DEFAULT_CLASS_SCORE
        scorer = ClassEmbeddingScorer(self.model, self.references, bank=self._bank_for(class_score))
        scores = scorer.score_against_all(array, class_ids, class_score, batch_size=batch_size)
        table = result_table(scores, chosen, self.class_names, class_ids)
        index = getattr(features, "index", None)
        if index is not None and len(index) == len(table):
            table.index = index
        return table

    def _bank_for(self, class_score: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The bank when class_score needs it ("neighbours"), else None; InputError without one."""
        if class_score != "neighbours":
            return None
        if self.bank is None:
            raise InputError("the neighbours class score needs the training samples' bank: load a run directory "
                             "of fit, or pass bank= (all.npy) to CleanNet.load", field="class_score")
        return self.bank

    def _decision(self, decision: str | ThresholdDecision | RelativeDecision) -> ThresholdDecision | RelativeDecision:
        if isinstance(decision, (ThresholdDecision, RelativeDecision)):
            return decision
        if decision == "threshold":
            return ThresholdDecision(THRESHOLD)
        if decision == "relative":
            if self.calibration is None:
                raise InputError("the relative decision needs a calibration: call calibrate(...) first, or "
                                 "use decision='threshold'", field="decision")
            return self.calibration.decision()
        raise InputError("must be 'relative', 'threshold' or a cleannet.decision object, got %r" % (decision,),
                         field="decision")


def find_label_issues(features: Any, labels: Any, *, verified: Any, class_names: Sequence[str] | None = None,
                      work_dir: str | None = None, seed: int = 0, recipe: str = RECOMMENDED_RECIPE,
                      decision: str = "relative", num_ref: int | None = None, n_step: int | None = None,
                      batch_size_sup: int | None = None, batch_size_unsup: int | None = None,
                      val_batch_size: int | None = None,
                      embed_norm: str | None = None, train_overrides: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """CleanNet in one call: references, training, calibration, and every sample scored.

    Args:
      features: [N, D] numbers; labels: [N] class indices (or names, see class_names);
      verified: [N] 1 = label verified correct, 0 = verified wrong, -1 = not verified.
      class_names: the class names by index (default: from the labels).
      work_dir: the run directory to keep (train.py's layout); None: a temporary one, removed.
      seed: seeds the split of the verified samples, k-means and training.
      recipe: train.py's --recipe: "robust" (recommended) or "paper".
      decision: "relative" (recommended; "threshold" with a single class) or "threshold".
        The recommended pair is the default; the paper's method is recipe="paper",
        decision="threshold".
      num_ref ... embed_norm: train.py's settings; None: chosen from the data size (logged).
      train_overrides: further TrainConfig fields, as they are.

    Returns:
      CleanNet.score's DataFrame: one row per sample, in input order; verdict 0 marks a
      label judged wrong, suggested_class the class it more likely belongs to.
    """
    if decision == "relative":
        api_inputs.check_calibration_split(features, labels, verified, class_names, seed)
    model = CleanNet(num_ref=num_ref, n_step=n_step, batch_size_sup=batch_size_sup, batch_size_unsup=batch_size_unsup,
                     val_batch_size=val_batch_size, embed_norm=embed_norm, recipe=recipe, seed=seed,
                     train_overrides=train_overrides)
    keep = contextlib.nullcontext(work_dir)
    with tempfile.TemporaryDirectory(prefix="cleannet-") if work_dir is None else keep as run_dir:
        model.fit(features, labels, verified=verified, run_dir=run_dir, class_names=class_names)
    if decision == "relative" and model.calibration is None:
        logging.info("A single class: no other class to compare with, the threshold decision is used.")
        decision = "threshold"
    return model.score(features, labels, decision=decision)


def label_issue_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per class (of `class_name`): samples, labels judged wrong, their share, mean similarity,
    and how many got a suggested class. One row per class, sorted by share judged wrong."""
    groups = table.assign(judged_wrong=table["verdict"] == 0,
                          suggested=table["suggested_class"].notna()).groupby("class_name", sort=True)
    summary = groups.agg(samples=("verdict", "size"), judged_wrong=("judged_wrong", "sum"),
                         mean_similarity=("similarity", "mean"), suggested=("suggested", "sum"))
    summary.insert(2, "share_judged_wrong", summary["judged_wrong"] / summary["samples"])
    return summary.sort_values("share_judged_wrong", ascending=False, kind="stable")


def result_table(scores: Any, decision: ThresholdDecision | RelativeDecision, class_names: Sequence[str],
                 class_ids: np.ndarray) -> pd.DataFrame:
    """inference.py's tsv output (cleannet.outputs.ResultWriter) as a DataFrame, without key
    and url, plus `weight`. Written and read back as text, so that the columns and values
    are those of the tool, whatever columns it has."""
    from cleannet.outputs import ResultWriter

    text = io.StringIO()
    ResultWriter(text, "tsv", decision, list(class_names)).write(scores, class_names=[class_names[c] for c in class_ids])
    text.seek(0)
    table = pd.read_csv(text, sep="\t", dtype={"class_name": str, "best_other_class": str, "suggested_class": str},
                        keep_default_na=False, na_values={"best_other_class": [""], "suggested_class": [""],
                                                          "best_other_similarity": [""], "margin": [""]})
    table = table.drop(columns=["key", "url"])
    table["weight"] = table["similarity"].clip(lower=0.0)
    return table


def _best_or_latest(checkpoint_dir: str) -> str:
    """CHECKPOINT_DIR/best when train.py kept a best model there, else CHECKPOINT_DIR."""
    best = os.path.join(checkpoint_dir, "best")
    return best if os.path.isfile(os.path.join(best, "checkpoint")) else checkpoint_dir


def _read_bank(path: str) -> tuple[np.ndarray, np.ndarray]:
    """all.npy as the neighbours class score's bank: (features float32 [N, D], class ids int32 [N])."""
    from cleannet import datafiles

    features, class_ids = datafiles.load_all(path, None)
    return np.array(features, np.float32), np.asarray(class_ids, np.int32)


def _recipe_class_score(checkpoint_dir: str) -> str:
    """The class score of the recipe recorded in CHECKPOINT_DIR/run.json (train.py records a
    recipe other than the paper's); the paper's when there is none."""
    from noisylabels.run_record import RECORD_FILE
    from noisylabels.state_files import read_json_state

    path = os.path.join(checkpoint_dir, RECORD_FILE)
    stored = read_json_state(path, "train the run again") if os.path.isfile(path) else {}
    settings = stored.get("settings")
    recipe = settings.get("recipe", "paper") if isinstance(settings, dict) else "paper"
    return RECIPES[recipe].class_score if recipe in RECIPES else DEFAULT_CLASS_SCORE


def _find_references(features: np.ndarray, class_ids: np.ndarray, names: list[str], num_ref: int,
                     seed: int) -> np.ndarray:
    """find_reference.py's k-means per class on the pool, rows grouped by class (all.npy's order)."""
    from cleannet.tools.find_reference import find_references

    order = np.argsort(class_ids, kind="stable")
    return find_references(features[order], class_ids[order], len(names), num_ref, seed=seed, class_names=names)


def _data_files(features: np.ndarray, class_ids: np.ndarray, flags: np.ndarray, train: np.ndarray, val: np.ndarray,
                pool: np.ndarray, references: np.ndarray) -> dict[str, np.ndarray]:
    """train.npy, val.npy ([n, D+2]: features, class id, vlabel), all.npy ([n, D+1], grouped
    by class in input order) and ref.npy, as util/convert_data.py and find_reference.py write them."""
    def verified_rows(index):
        return np.column_stack([features[index], class_ids[index], flags[index]]).astype(np.float32)

    grouped = pool[np.argsort(class_ids[pool], kind="stable")]
    return {"train.npy": verified_rows(train), "val.npy": verified_rows(val),
            "all.npy": np.column_stack([features[grouped], class_ids[grouped]]).astype(np.float32),
            "ref.npy": references}


def _write_run_data(run_dir: str, data: Mapping[str, np.ndarray], names: list[str]) -> None:
    """Writes the run's data files and class list into run_dir; when they exist already (a
    run to resume), they must hold the same values, else InputError (nothing overwritten)."""
    from noisylabels.fileio import atomic_open, save_npy

    data_dir = os.path.join(run_dir, DATA_SUBDIR)
    class_list = os.path.join(run_dir, CLASS_LIST)
    wanted = "".join(name + "\n" for name in names)
    existing = [name for name in data if os.path.exists(os.path.join(data_dir, name))]
    if existing or os.path.exists(class_list):
        same = len(existing) == len(data) and all(
            np.array_equal(np.load(os.path.join(data_dir, name), allow_pickle=False), array)
            for name, array in data.items())
        if not same or not os.path.exists(class_list) or open(class_list, encoding="utf-8").read() != wanted:
            raise InputError("holds a run on other data or settings; use another run directory (nothing was "
                             "overwritten)", path=run_dir)
        return
    os.makedirs(data_dir, exist_ok=True)
    for name, array in data.items():
        save_npy(os.path.join(data_dir, name), array)
    with atomic_open(class_list, "w", encoding="utf-8") as f:
        f.write(wanted)
