"""inference.py is a thin shell: only its entry functions read absl FLAGS, and the work is
callable from Python with a typed InferenceConfig, giving the output the command gives."""

import ast
import os
import subprocess
import sys

import numpy as np

from test_every_row_scored import IMG_DIM, NUM_REF, inference, model_dir, write_val  # noqa: F401 (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_FUNCTIONS = {"main", "run", "define_flags", "inference_config_from_flags"}


def test_only_entry_functions_read_flags():
    path = os.path.join(ROOT, "cleannet", "tools", "inference.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    readers = set()
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = ast.Module(body=function.body, type_ignores=[])
            if any(isinstance(node, ast.Name) and node.id == "FLAGS" for node in ast.walk(body)):
                readers.add(function.name)
    assert readers <= ENTRY_FUNCTIONS, readers - ENTRY_FUNCTIONS


def test_config_fields_are_the_flags_with_their_defaults():
    """Every field is a flag of inference.py, and the flags' defaults make the default config
    (in a child process: define_flags defines into absl's global FLAGS)."""
    code = ("import dataclasses; from cleannet.tools import inference as t; t.define_flags(); t.FLAGS(['x']); "
            "assert t.inference_config_from_flags() == t.InferenceConfig(); "
            "own = set(t.FLAGS.get_key_flags_for_module(t.__name__)); "
            "print(sorted(f.name for f in dataclasses.fields(t.InferenceConfig) if t.FLAGS[f.name] not in own))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_infer_from_python_equals_the_command(model_dir, tmp_path):  # noqa: F811
    from cleannet.tools.inference import InferenceConfig, infer

    write_val(model_dir / "data" / "val.npy", 21, seed=21)
    by_command = tmp_path / "command.tsv"
    result = inference(model_dir, "--mode=val", "--batch_size=8", "--output_format=tsv",
                       "--output_file=%s" % by_command)
    assert result.returncode == 0, result.stderr[-2000:]
    by_python = tmp_path / "python.tsv"
    infer(InferenceConfig(data_dir=str(model_dir / "data"), class_list=str(model_dir / "classes.txt"),
                          checkpoint_dir=str(model_dir / "ckpt"), output_file=str(by_python), img_dim=IMG_DIM,
                          num_ref=NUM_REF, batch_size=8, mode="val", output_format="tsv"))
    assert by_python.read_text() == by_command.read_text()
    assert len(by_python.read_text().splitlines()) == 22 and np.isfinite(
        [float(line.split("\t")[3]) for line in by_python.read_text().splitlines()[1:]]).all()
