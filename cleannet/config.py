"""train.py's settings: the original flag names and defaults, defined once.

`train.py` defines its absl flags from these defaults, and `cleannet.trainer.train` takes
a `TrainConfig`; nothing here imports TensorFlow, so flags are checked before it loads.
"""

import dataclasses
import os
from typing import Optional

from noisylabels.errors import InputError


@dataclasses.dataclass
class TrainConfig:
    """train.py's flags (the original's names and defaults, then the port's additions)."""
    data_dir: str = "./data/"
    checkpoint_dir: str = "./train/checkpoints/"
    log_dir: str = "./train/log/"
    log_interval: int = 100
    val_interval: int = 2000
    img_dim: int = 2048
    num_ref: int = 32
    batch_size_sup: int = 32
    batch_size_unsup: int = 32
    val_batch_size: int = 64
    learning_rate: float = 0.01
    n_step: int = 60000
    lr_update: int = 30000
    lr_decay: float = 0.1
    dropout_rate: float = 0.0
    weight_decay: float = 0.0001
    neg_weight: float = 5.0
    val_sim_thres: float = 0.1
    momentum: float = 0.9
    embed_norm: str = "log"
    # Additions of the port.
    seed: int = 123
    allow_pickle: bool = False
    jit_compile: bool = False
    max_checkpoints: int = 5
    class_list: Optional[str] = None
    distribution: str = "none"
    num_cpu_replicas: int = 0
    mixed_precision: bool = False
    recipe: str = "paper"

    def recipe_settings(self) -> "Recipe":
        """The training settings of --recipe (RECIPES)."""
        return RECIPES[self.recipe]

    @classmethod
    def from_flags(cls, flag_values) -> "TrainConfig":
        """The config of parsed absl flags (every field is a flag of the same name).

        --recipe's embed_norm replaces --embed_norm's default when --embed_norm is not given.
        """
        config = cls(**{field.name: flag_values[field.name].value for field in dataclasses.fields(cls)})
        recipe = config.recipe_settings()
        if recipe.embed_norm is not None and not flag_values["embed_norm"].present:
            config.embed_norm = recipe.embed_norm
        return config


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What --recipe switches on in training (beyond the paper).

    cross_class_weight: weight of the cross-class negatives: every verified sample with a
      correct label (vlabel 1) of class c is also a negative (the supervised loss with
      vlabel 0) for one other class c' drawn at random each step.
    confident_weight: the same for unverified samples whose pseudo-label is confident
      (cos to their labelled class ≥ confident_cos), scaled by this weight.
    confident_cos: the cosine above which an unverified sample counts as confident.
    embed_norm: the feature normalisation it uses (None: --embed_norm as given); train.py
      applies it when --embed_norm is not given (TrainConfig.from_flags), a TrainConfig
      built in Python takes its embed_norm field as set.
    class_score: the class score train.py calibrates the relative decision with for the best
      model (best/calibration.json; cleannet.scoring.CLASS_SCORES).
    """
    cross_class_weight: float = 0.0
    confident_weight: float = 0.0
    confident_cos: float = 0.5
    embed_norm: Optional[str] = None
    class_score: str = "references"


RECIPES = {"paper": Recipe(),
           "robust": Recipe(cross_class_weight=1.0, confident_weight=0.1, embed_norm="l2norm",
                            class_score="neighbours")}

# The settings a run directory records: resuming with other values is refused, since they
# change the model's shape or the data stream.
RECORDED_SETTINGS = ("img_dim", "num_ref", "embed_norm", "batch_size_sup", "batch_size_unsup", "seed")
DEFAULTS = TrainConfig()


def data_files(config: TrainConfig) -> dict:
    """The files train.py reads from --data_dir: name -> path (all.npy only with unverified batches)."""
    names = ("train.npy", "val.npy", "ref.npy") + (("all.npy",) if config.batch_size_unsup > 0 else ())
    return {name: os.path.join(config.data_dir, name) for name in names}


def check_data_files(config: TrainConfig) -> None:
    """Fails fast (before TensorFlow loads) when --data_dir or one of its files is missing."""
    if not os.path.isdir(config.data_dir):
        raise InputError("not a directory", path=config.data_dir, field="--data_dir")
    for path in data_files(config).values():
        if not os.path.isfile(path):
            raise InputError("file not found (util/convert_data.py and util/find_reference.py write it)", path=path)
