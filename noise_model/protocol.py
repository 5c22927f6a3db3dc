"""The noisy-label protocol's names, defined once: data sets, splits, noise types, stages.

Plain Python (no TensorFlow), so the command-line tools check their flags against these
names before TensorFlow loads. docs/noise_model.md describes each stage.
"""

from noisylabels.errors import InputError

# The data sets a prepared directory can hold; the array ones are held in memory as
# `{split}_images.npy` / `{split}_labels.npy`, Clothing1M as `{split}.txt` image lists.
ARRAY_DATASETS = ("cifar10", "digits")
DATASETS = ARRAY_DATASETS + ("clothing1m",)

# The splits a prepared directory of each data set holds.
SPLITS = {
    "cifar10": ("clean_train", "mixed_train", "ntype_train", "ntype_test", "test"),
    "digits": ("clean_train", "mixed_train", "ntype_train", "ntype_test", "test"),
    "clothing1m": ("clean_train", "clean_val", "mixed_train", "ntype_train", "ntype_val",
                   "ntype_test", "test"),
}

# Noise types z: 0 noise-free, 1 random, 2 confusing.
NUM_NOISE_TYPES = 3

# The label columns of a split: (clean label, noisy label, noise type), -1 where unknown.
CLEAN_COLUMN, NOISY_COLUMN, NTYPE_COLUMN = 0, 1, 2

STAGES = ("clean", "noisy_gt", "ntype", "joint", "joint_stage2")

# The stages each data set's protocol defines, in the order --stage=all runs them.
PIPELINES = {
    "cifar10": ("clean", "noisy_gt", "ntype", "joint"),
    "digits": ("clean", "noisy_gt", "ntype", "joint"),
    "clothing1m": ("clean", "ntype", "joint", "joint_stage2"),
}

# Which nets a stage trains: "clean" (the clean-label net alone), "ntype" (the noise-type
# net alone) or "joint" (both, joined by the noisy-label loss).
STAGE_NET = {"clean": "clean", "noisy_gt": "clean", "ntype": "ntype",
             "joint": "joint", "joint_stage2": "joint"}

# The split each stage trains on.
TRAIN_SPLIT = {"clean": "clean_train", "noisy_gt": "mixed_train", "ntype": "ntype_train",
               "joint": "mixed_train", "joint_stage2": "mixed_train"}


def check_stage(dataset: str, stage: str) -> None:
    """Raises InputError (naming the flag) unless `stage` is part of `dataset`'s protocol."""
    if dataset not in DATASETS:
        raise InputError("unknown dataset %r; expected one of %s" % (dataset, ", ".join(DATASETS)),
                         field="--dataset")
    if stage not in PIPELINES[dataset]:
        raise InputError("stage %r is not part of the %s protocol (its stages: %s)"
                         % (stage, dataset, ", ".join(PIPELINES[dataset])), field="--stage")
