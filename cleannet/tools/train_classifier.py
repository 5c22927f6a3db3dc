"""Trains a classifier on features or on images (CNN backbone) with CleanNet's per-sample weights.

    python inference.py --mode=inference --image_feature_list=all.tsv --output_weights=W.tsv ...
    cleannet-train-classifier --train_tsv=all.tsv --test_tsv=test.tsv --class_list=classes.txt \\
        --weights_file=W.tsv --weighting=soft --img_dim=2048 --train_dir=classifier/

(`python train_classifier.py ...` from a checkout is the same tool.)

Inputs:
  --train_tsv   training features with their (noisy) labels: an all-samples TSV (key, [url,]
                class_name, feature; --train_layout=all, the default), a verified TSV (key,
                [url,] class_name, vlabel, feature; --train_layout=verified; vlabel is
                ignored, every row is used), or a .npy written by util/convert_data.py
                (all.npy [N, h+1] or train/val.npy [N, h+2]; keys are the 0-based row numbers).
  --test_tsv    test features with their TRUE labels, all-samples layout (or .npy).
  --weights_file  inference.py --output_weights: key, class_name, soft_weight, hard_weight
                with a header. Joined to the training samples by key; a training key without
                a weight, or with a weight written for another class, is an error.
  --weighting   none: every sample weight 1; soft: max(0, cos); hard: 1[cos >= threshold].

Model: standardisation of the features (mean and variance of the training features) →
[dense --hidden_units ReLU, if > 0] → dense num_class (softmax logits). Training is Keras'
`model.fit` on (x, y, sample_weight) batches: loss Σ_i w_i·CE_i / batch size (Keras'
sample-weight convention), Adam; "accuracy" is the weighted share of training samples
predicted as their label, "val_accuracy" the plain test accuracy.

--train_dir: Keras' BackupAndRestore state in --train_dir/checkpoints (the weights and the
optimizer after the last finished epoch, kept after training: a killed or finished run
started again with the same flags, and any larger --epochs, continues from there; the
epochs it trains are the ones an uninterrupted run would have trained, bit for bit) and
Keras' TensorBoard logs in --train_dir/log (runs "train" and "validation": epoch_loss,
epoch_accuracy per epoch).

Image-list mode (instead of --train_tsv / --test_tsv): a CNN backbone and the same head,
trained end to end on the images (or only the head with --freeze_backbone):

    cleannet-train-classifier --train_images=train_list.txt --test_images=test_list.txt \\
        --image_root=images/ --class_list=classes.txt --weights_file=W.tsv --weighting=hard \\
        --backbone=resnet50 --backbone_weights=resnet50_notop.h5 --train_dir=classifier/

  --train_images, --test_images  lines key<TAB>image path<TAB>class_name (format and
                pipeline: cleannet/image_input.py); weights joined by key as above.
  --image_root  relative paths are joined to it and must stay inside it (default: the
                list file's directory); a missing image or a path leaving the root is an
                error naming the list file and line; an undecodable image too, unless
                --skip_bad_images (dropped and counted).
  --backbone    resnet50 | mobilenet_v2 (keras.applications, weights=None: nothing is
                downloaded) | small_cnn; --backbone_weights loads a Keras weights file of
                the backbone without its top (e.g. ImageNet weights you have).
  --image_size  images resized to this square (default 224, at least 32).

From Python: `cleannet.classifier.training.train_classifier(...)` (features) and
`train_image_classifier(...)` (image lists) return the final test accuracy. Keras and
TensorFlow are imported by the functions that use them, so that the command line's flag
and file errors come before they load.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from absl import flags

from cleannet.choices import IMAGE_BACKBONES
from cleannet.classifier.data import LAYOUTS
from cleannet.classifier.training import train_classifier, train_image_classifier
from cleannet.classifier.weights import WEIGHTINGS
from noisylabels.errors import InputError, check_flag
from noisylabels.flagutil import define_finite_float, define_img_dim, run_tool


def define_flags() -> None:
    """Defines the tool's flags (same names and defaults as train_classifier.py always had)."""
    flags.DEFINE_string("train_tsv", None, "Training features with their (noisy) labels: TSV or .npy.")
    flags.DEFINE_enum("train_layout", "all", list(LAYOUTS),
                      "Layout of --train_tsv: all (key, [url,] class_name, feature) or verified "
                      "(key, [url,] class_name, vlabel, feature).")
    flags.DEFINE_string("test_tsv", None, "Test features with their TRUE labels, all-samples layout (or .npy).")
    flags.DEFINE_string("class_list", None, "List of class names, one per line.", required=True)
    flags.DEFINE_string("weights_file", None, "Sample weights from inference.py --output_weights.")
    flags.DEFINE_enum("weighting", "none", list(WEIGHTINGS),
                      "none: weight 1; soft: max(0, cos); hard: 1[cos >= threshold].")
    define_img_dim(None, " Required for .npy; default: the TSV's.")
    flags.DEFINE_integer("epochs", 20, "Passes over the training data.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 64, "Training batch size.", lower_bound=1)
    define_finite_float("learning_rate", 0.001, "Adam learning rate.", above=0.0)
    flags.DEFINE_integer("hidden_units", 0, "Units of the hidden ReLU layer; 0: a linear softmax classifier.",
                         lower_bound=0)
    flags.DEFINE_string("train_dir", None, "Resume state (train_dir/checkpoints, Keras BackupAndRestore) and "
                        "TensorBoard logs (train_dir/log); none written when empty.")
    flags.DEFINE_integer("seed", 0, "Seed of the initialisation, the shuffling and the mirroring.")
    flags.DEFINE_string("train_images", None, "Image-list mode: training images with their (noisy) labels, "
                        "lines key<TAB>image path<TAB>class_name (instead of --train_tsv).")
    flags.DEFINE_string("test_images", None, "Image-list mode: test images with their TRUE labels, same format.")
    flags.DEFINE_string("image_root", None, "Relative image paths are joined to it and must stay inside it; "
                        "default: the directory of each list file.")
    flags.DEFINE_enum("backbone", "resnet50", list(IMAGE_BACKBONES),
                      "Image-list mode: the CNN (keras.applications with weights=None, or a small CNN).")
    flags.DEFINE_string("backbone_weights", None, "A Keras weights file for the backbone without its top "
                        "(e.g. ImageNet notop weights you have); default: random initialisation.")
    flags.DEFINE_integer("image_size", 224, "Images are resized to image_size x image_size pixels.", lower_bound=32)
    flags.DEFINE_bool("freeze_backbone", False, "Train only the head; the backbone runs in inference mode.")
    flags.DEFINE_bool("skip_bad_images", False, "Drop (and count) images that cannot be decoded instead of "
                      "stopping with an error naming the first.")
    flags.register_multi_flags_validator(
        ["train_tsv", "train_images"], lambda v: bool(v["train_tsv"]) != bool(v["train_images"]),
        message="give exactly one of --train_tsv (features) and --train_images (image list)")
    flags.register_multi_flags_validator(
        ["train_tsv", "test_images"], lambda v: not (v["train_tsv"] and v["test_images"]),
        message="--test_images goes with --train_images, not --train_tsv")
    flags.register_multi_flags_validator(
        ["train_images", "test_tsv"], lambda v: not (v["train_images"] and v["test_tsv"]),
        message="--test_tsv goes with --train_tsv, not --train_images")
    flags.register_multi_flags_validator(
        ["weighting", "weights_file"], lambda v: v["weighting"] == "none" or bool(v["weights_file"]),
        message="--weighting=soft or hard needs --weights_file")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """The tool's settings, one field per flag (same names and defaults as the flags)."""

    class_list: str
    train_tsv: str | None = None
    train_layout: str = "all"
    test_tsv: str | None = None
    weights_file: str | None = None
    weighting: str = "none"
    img_dim: int | None = None
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 0.001
    hidden_units: int = 0
    train_dir: str | None = None
    seed: int = 0
    train_images: str | None = None
    test_images: str | None = None
    image_root: str | None = None
    backbone: str = "resnet50"
    backbone_weights: str | None = None
    image_size: int = 224
    freeze_backbone: bool = False
    skip_bad_images: bool = False


def config_from_flags() -> ClassifierConfig:
    """The parsed flags as a ClassifierConfig."""
    return ClassifierConfig(**{field.name: flags.FLAGS[field.name].value
                               for field in dataclasses.fields(ClassifierConfig)})


def check_inputs_exist(config: ClassifierConfig, names: Sequence[str]) -> None:
    """Fails fast, before TensorFlow loads, when an input file the settings `names` name is missing."""
    for name in names:
        path = getattr(config, name)
        if path and not os.path.isfile(path):
            raise InputError("file not found", path=path, field="--" + name)


def train(config: ClassifierConfig) -> float:
    """Trains in the mode `config` chooses (features or image lists); returns the test accuracy (NaN without
    a test set)."""
    common = dict(weights_file=config.weights_file, weighting=config.weighting, epochs=config.epochs,
                  batch_size=config.batch_size, learning_rate=config.learning_rate,
                  hidden_units=config.hidden_units, train_dir=config.train_dir, seed=config.seed)
    if config.train_tsv:
        return train_classifier(config.train_tsv, config.class_list, test_tsv=config.test_tsv,
                                img_dim=config.img_dim, train_layout=config.train_layout, **common)
    return train_image_classifier(config.train_images, config.class_list, test_images=config.test_images,
                                  image_root=config.image_root, backbone=config.backbone,
                                  backbone_weights=config.backbone_weights, image_size=config.image_size,
                                  freeze_backbone=config.freeze_backbone,
                                  skip_bad_images=config.skip_bad_images, **common)


def main(argv: Sequence[str]) -> None:
    """Trains in the mode the flags choose and prints `test accuracy = X` when there is a test set."""
    from noisylabels.console import load_tensorflow

    config = config_from_flags()
    check_flag(len(argv) == 1, "train_tsv", "unexpected arguments %s" % argv[1:])
    check_inputs_exist(config, ["class_list", "train_tsv", "test_tsv", "train_images", "test_images",
                                "backbone_weights"] + (["weights_file"] if config.weighting != "none" else []))
    load_tensorflow()  # after the flag and file checks: a bad command line fails without loading TensorFlow
    accuracy = train(config)
    tested = config.test_tsv if config.train_tsv else config.test_images
    if tested:
        print("test accuracy = %.6f" % accuracy)


def run() -> None:
    """Console entry point (cleannet-train-classifier)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
