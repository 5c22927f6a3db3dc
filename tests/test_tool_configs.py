"""A tool's typed config (built by its `config_from_flags`) has one field per flag with the flag's default, so
that calling the tool's code from Python with the config's defaults is the command line without flags."""

import json
import os
import subprocess
import sys

from process_control import ROOT

# Reads the flags the tool defines, parses `argv`, and prints the flags' defaults, the parsed values and the
# config `config_from_flags` built from them (the config's repr of each field, as JSON).
PROBE = """
import dataclasses, json, sys
from absl import flags
import {module} as tool
tool.define_flags()
flags.FLAGS(["tool"] + {argv!r})
own = {{flag.name for flag in flags.FLAGS.get_key_flags_for_module(tool.__name__)}}
config = tool.config_from_flags()
print(json.dumps({{"flags": {{name: [flags.FLAGS[name].default, flags.FLAGS[name].value] for name in own}},
                   "config": dataclasses.asdict(config),
                   "defaults": dataclasses.asdict(tool.{config_class}({required}))}}, default=repr))
"""


def probe(module, config_class, argv, required):
    code = PROBE.format(module=module, argv=argv, config_class=config_class, required=required)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_classifier_config_is_its_flags():
    given = ["--class_list=c.txt", "--train_tsv=t.tsv", "--epochs=3", "--weighting=soft", "--weights_file=w.tsv",
             "--freeze_backbone"]
    out = probe("cleannet.tools.train_classifier", "ClassifierConfig", given, "class_list='c.txt'")
    assert set(out["config"]) == set(out["flags"])
    for name, (default, value) in out["flags"].items():
        assert out["config"][name] == value, name
        if name != "class_list":
            assert out["defaults"][name] == default, name  # the dataclass default is the flag's
    assert out["config"]["epochs"] == 3 and out["config"]["freeze_backbone"] is True


def test_noise_train_config_is_its_flags():
    given = ["--dataset=digits", "--stage=clean", "--data_dir=d", "--train_dir=t", "--seed=4", "--base_lr=0.5"]
    out = probe("noise_model.tools.train", "TrainConfig", given,
                "dataset='digits', stage='clean', data_dir='d', train_dir='t'")
    overrides = out["config"].pop("overrides")
    out["defaults"].pop("overrides")
    assert set(out["config"]) | set(overrides) == set(out["flags"])
    assert not set(out["config"]) & set(overrides)
    for name, (default, value) in out["flags"].items():
        assert (overrides[name] if name in overrides else out["config"][name]) == value, name
        if name in out["defaults"] and name not in ("dataset", "stage", "data_dir", "train_dir"):
            assert out["defaults"][name] == default, name
    assert overrides["base_lr"] == 0.5 and overrides["max_iter"] is None and out["config"]["seed"] == 4
