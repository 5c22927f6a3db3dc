"""The named choices of CleanNet's tools, defined once and importable without TensorFlow
(the flag definitions use them before TensorFlow loads)."""

from noisylabels.flagutil import EMBED_NORMS  # log | l2norm | l2_norm | no_norm (feature normalisation)

OUTPUT_FORMATS = ("plain", "tsv", "jsonl")  # inference.py --output_format
DECISIONS = ("threshold", "relative")  # inference.py --decision
CLASS_SCORES = ("references", "embedding", "neighbours")  # how a sample is compared with another class
DEFAULT_CLASS_SCORE = "references"  # inference.py's class score when neither --class_score nor a calibration says
INFERENCE_MODES = ("inference", "val", "calibrate")  # inference.py --mode
IMAGE_BACKBONES = ("resnet50", "mobilenet_v2", "small_cnn")  # train_classifier.py --backbone

__all__ = ["EMBED_NORMS", "OUTPUT_FORMATS", "DECISIONS", "CLASS_SCORES", "DEFAULT_CLASS_SCORE", "INFERENCE_MODES", "IMAGE_BACKBONES"]
