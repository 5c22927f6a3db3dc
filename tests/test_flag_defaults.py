"""train.py and inference.py keep the original flags' names and defaults (docs/originals.md#cleannet-training and #cleannet-inference)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN_DEFAULTS = {
    "data_dir": "'./data/'", "checkpoint_dir": "'./train/checkpoints/'", "log_dir": "'./train/log/'",
    "log_interval": "100", "val_interval": "2000", "img_dim": "2048", "num_ref": "32", "batch_size_sup": "32",
    "batch_size_unsup": "32", "val_batch_size": "64", "learning_rate": "0.01", "n_step": "60000",
    "lr_update": "30000", "lr_decay": "0.1", "dropout_rate": "0.0", "weight_decay": "0.0001",
    "neg_weight": "5.0", "val_sim_thres": "0.1", "momentum": "0.9", "embed_norm": "'log'",
}
INFERENCE_DEFAULTS = {
    "data_dir": "'./data/'", "image_feature_list": "'./data/input_tsv.tsv'", "class_list": "'./data/classes.txt'",
    "checkpoint_dir": "'./runs/'", "output_file": "'./runs/pred.txt'", "img_dim": "2048", "num_ref": "32",
    "batch_size": "64", "val_sim_thres": "0.1", "embed_norm": "'log'", "mode": "'inference'", "num_samples": "-1",
}


def helpful_defaults(script):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), "--helpfull"], capture_output=True,
                            text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    text = result.stdout + result.stderr
    # absl prints "  --name: help ..." then, on a later line of the same block, "(default: 'value')".
    defaults, current = {}, None
    for line in text.splitlines():
        start = re.match(r"^\s+--(?:\[no\])?(\w+):", line)
        if start:
            current = start.group(1)
        default = re.search(r"\(default: (.*)\)", line)
        if default and current and current not in defaults:
            defaults[current] = default.group(1)
    return defaults


@pytest.mark.parametrize("script, expected", [("train.py", TRAIN_DEFAULTS), ("inference.py", INFERENCE_DEFAULTS)])
def test_original_flags_and_defaults(script, expected):
    defaults = helpful_defaults(script)
    for name, value in expected.items():
        assert name in defaults, "%s lacks --%s" % (script, name)
        got, want = defaults[name].strip("'"), value.strip("'")
        if value.startswith("'"):
            assert got == want, (name, got, want)
        else:
            assert float(got) == float(want), (name, got, want)
