"""Every tool's --help: exit 0, the tool's description first, then its own flags (before absl's)."""

import os
import subprocess
import sys

import pytest

from process_control import ROOT

# (script path, module whose run() it calls, a flag of its own)
TOOLS = [
    ("train.py", "cleannet.tools.train", "--batch_size_sup"),
    ("inference.py", "cleannet.tools.inference", "--image_feature_list"),
    ("train_classifier.py", "cleannet.tools.train_classifier", "--weighting"),
    ("util/convert_data.py", "cleannet.tools.convert_data", "--split"),
    ("util/find_reference.py", "cleannet.tools.find_reference", "--small_class"),
    ("util/heldout_train_data.py", "cleannet.tools.heldout_train_data", "--heldout_class_list"),
    ("util/make_cleaned_list.py", "cleannet.tools.make_cleaned_list", "--keep"),
    ("util/report.py", "cleannet.tools.report", "--queue"),
    ("util/merge_queue.py", "cleannet.tools.merge_queue", "--skip_unfilled"),
    ("util/extract_features.py", "cleannet.tools.extract_features", "--image_root"),
    ("util/import_tf1_checkpoint.py", "cleannet.tools.import_tf1_checkpoint", "--tf1_checkpoint"),
    ("util/export_saved_model.py", "cleannet.tools.export_saved_model", "--export_dir"),
    ("noise_model/train.py", "noise_model.tools.train", "--stage"),
    ("noise_model/cifar10.py", "noise_model.tools.cifar10", "--num_clean"),
    ("noise_model/clothing1m.py", "noise_model.tools.clothing1m", "--on_bad_image"),
    ("noise_model/digits.py", "noise_model.tools.digits", "--num_test"),
    ("noise_model/import_caffemodel.py", "noise_model.tools.import_caffemodel", "--caffemodel"),
    ("noise_model/noise.py", "noise_model.tools.noise", "--action"),
]


def first_flags_section(text):
    """(section header, its lines) of the first module section after 'flags:'."""
    lines = text.splitlines()
    start = lines.index("flags:") + 1
    while not lines[start].strip():
        start += 1
    header = lines[start]
    end = start + 1
    while end < len(lines) and (lines[end].startswith(" ") or not lines[end].strip()):
        end += 1
    return header, "\n".join(lines[start + 1:end])


@pytest.mark.parametrize("script, module, own_flag", TOOLS, ids=[t[0] for t in TOOLS])
def test_help_of_the_script_lists_its_own_flags_first_and_exits_0(script, module, own_flag):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    header, section = first_flags_section(proc.stdout)
    assert header.rstrip(":").endswith(script), header
    assert own_flag + ":" in section or own_flag + " " in section or "]" + own_flag[2:] in section, section[:500]
    assert "--[no]logtostderr" not in section  # absl's own flags come later


@pytest.mark.parametrize("script, module, own_flag", TOOLS[:4], ids=[t[0] for t in TOOLS[:4]])
def test_an_installed_console_script_lists_the_tools_flags_first(script, module, own_flag, tmp_path):
    """A console script's sys.argv[0] is its wrapper (e.g. bin/cleannet-train), not the module."""
    wrapper = str(tmp_path / "bin" / "cleannet-tool")
    code = "import sys; sys.argv[0] = %r; sys.path.insert(0, %r); import %s as tool; tool.run()" % (
        wrapper, ROOT, module)
    proc = subprocess.run([sys.executable, "-c", code, "-h"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    header, section = first_flags_section(proc.stdout)
    assert header.rstrip(":") == wrapper and own_flag in section, (header, section[:300])
    description = proc.stdout.splitlines()[0]
    assert description and "USAGE" not in description, description
