"""Packaging: pip install works and installs the console commands; train.py's flags and --flagfile."""

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from cleannet_fixtures import write_cleannet_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

# docs/originals.md#cleannet-training's flags of train.py.
ORIGINAL_TRAIN_FLAGS = ["data_dir", "checkpoint_dir", "log_dir", "log_interval", "val_interval", "img_dim", "num_ref",
                    "batch_size_sup", "batch_size_unsup", "val_batch_size", "learning_rate", "n_step", "lr_update",
                    "lr_decay", "dropout_rate", "weight_decay", "neg_weight", "val_sim_thres", "momentum",
                    "embed_norm"]

SCRIPTS = ["cleannet-train", "cleannet-inference", "cleannet-convert-data", "cleannet-find-reference",
           "cleannet-heldout-train-data", "cleannet-import-tf1-checkpoint", "cleannet-export-saved-model", "cleannet-extract-features",
           "cleannet-make-cleaned-list", "cleannet-report", "cleannet-merge-queue",
           "cleannet-train-classifier", "cleannet-quickstart", "noise-model-train", "noise-model-prepare-cifar10",
           "noise-model-prepare-clothing1m", "noise-model-prepare-digits", "noise-model-import-caffemodel",
           "noise-model-noise"]


def entry_points():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def runtime_requirements(name):
    """The requirement lines of a requirements file, its -r includes followed, without the tests' packages."""
    with open(os.path.join(ROOT, name)) as f:
        lines = [line.strip() for line in f]
    lines = lines[:lines.index("# Tests")] if "# Tests" in lines else lines
    found = []
    for line in lines:
        if line.startswith("-r "):
            found += runtime_requirements(line[3:].strip())
        elif line and not line.startswith("#"):
            found.append(line)
    return found


def test_cpu_requirements_differ_only_in_tensorflow():
    default, cpu = runtime_requirements("requirements.txt"), runtime_requirements("requirements-cpu.txt")
    assert [r for r in default if r.startswith("tensorflow[")] == ["tensorflow[and-cuda]>=2.16,<3"]
    assert [r for r in cpu if r.startswith("tensorflow")] == ["tensorflow-cpu>=2.16,<3"]
    assert sorted(r for r in default if not r.startswith("tensorflow[")) == \
        sorted(r for r in cpu if not r.startswith("tensorflow-cpu"))


def test_pyproject_metadata():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["name"] == "cleannet-tf2" and project["version"] == "0.1.0"
    assert project["requires-python"] == ">=3.10"
    assert sorted(project["dependencies"]) == sorted(runtime_requirements("requirements.txt"))
    assert sorted(project["scripts"]) == sorted(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_entry_point_is_a_zero_argument_function(name):
    """Each console command names a module-level `def NAME():` (checked in the source, no import)."""
    module, function = entry_points()[name].split(":")
    path = os.path.join(ROOT, *module.split(".")) + ".py"
    tree = ast.parse(open(path).read())
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function]
    assert found, "%s has no module-level %s()" % (module, function)
    args = found[0].args
    assert not (args.args or args.posonlyargs or args.kwonlyargs or args.vararg or args.kwarg)


INSTALLED_PACKAGES = ("cleannet", "noise_model", "noisylabels")


def documented_modules():
    """Every `python -m MODULE` that README.md and docs/*.md name, of the installed packages."""
    paths = [os.path.join(ROOT, "README.md")] + [os.path.join(ROOT, "docs", name)
                                                 for name in sorted(os.listdir(os.path.join(ROOT, "docs")))
                                                 if name.endswith(".md")]
    found = set()
    for path in paths:
        text = open(path, encoding="utf-8").read()
        found.update(m for m in re.findall(r"python -m ([A-Za-z_][\w.]*\w)", text)
                     if m.split(".")[0] in INSTALLED_PACKAGES and not m.rsplit(".", 1)[1].isupper())  # not .X
    return sorted(found)


def test_documented_modules_are_runnable_modules_of_the_package():
    """Each documented `python -m` module exists in an installed package and runs as __main__."""
    modules = documented_modules()
    assert "cleannet.quickstart" in modules and "noise_model.train" in modules
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        packages = tomllib.load(f)["tool"]["setuptools"]["packages"]
    for module in modules:
        assert module.rsplit(".", 1)[0] in packages, module
        source = open(os.path.join(ROOT, *module.split(".")) + ".py", encoding="utf-8").read()
        assert 'if __name__ == "__main__":' in source, module


def test_package_code_runs_no_tool_by_a_checkout_path():
    """A tool the package starts runs as `python -m PACKAGE.MODULE`: util/, bench/ and the
    top-level scripts exist in a checkout only."""
    pattern = re.compile(r"""(["'])(?:util/\w+\.py|train\.py|inference\.py|train_classifier\.py)\1""")
    for package in INSTALLED_PACKAGES:
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    source = open(os.path.join(directory, name), encoding="utf-8").read()
                    assert not pattern.search(source), os.path.join(directory, name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`pip install --target` of a copy of the checkout (no network, no dependencies)."""
    tmp_path = tmp_path_factory.mktemp("install")
    source = tmp_path / "src"
    anywhere = shutil.ignore_patterns(".git", "__pycache__", "build", "*.egg-info", ".hypothesis")
    at_top = {"data", "train", "runs", "bench", "quickstart"}  # the checkout's run outputs (noise_model/data/ is a package)
    shutil.copytree(ROOT, source, ignore=lambda directory, names: set(anywhere(directory, names)) | (
        at_top & set(names) if os.path.samefile(directory, ROOT) else set()))
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                             "--no-cache-dir", "--disable-pip-version-check", "--no-index", "--target", str(target),
                             str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"  # neither the checkout nor the install
    elsewhere.mkdir()
    env = dict(ENV, PYTHONPATH=str(target))
    return dict(target=target, elsewhere=elsewhere, env=env)


@pytest.mark.slow
def test_pip_install_creates_console_scripts(installed):
    target = installed["target"]
    for name in SCRIPTS:
        script = target / "bin" / name
        assert script.exists(), name
        module, function = entry_points()[name].split(":")
        assert "from %s import %s" % (module, function) in script.read_text()
    for module in ("cleannet/model.py", "cleannet/tools/train.py", "noise_model/model/layers.py",
                   "noisylabels/progress.py"):
        assert (target / module).exists(), module
    top_level = {p.name for p in target.iterdir()} - {"bin"}
    assert {"cleannet", "noise_model", "noisylabels"} <= top_level
    for name in ("train", "inference", "train_classifier", "util", "tests", "bench"):
        assert name not in top_level and name + ".py" not in top_level, (name, sorted(top_level))


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_every_console_script_helps_from_another_directory(installed, name):
    script = str(installed["target"] / "bin" / name)
    result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                            env=installed["env"], cwd=str(installed["elsewhere"]), timeout=120)
    assert result.returncode == 0, (name, result.stderr[-1000:])
    own = result.stdout.split(script + ":")
    assert len(own) == 2 and "  --" in own[1], name  # the tool's own flags come first


@pytest.mark.slow
def test_every_documented_module_helps_from_another_directory(installed):
    for module in documented_modules():
        result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                                env=installed["env"], cwd=str(installed["elsewhere"]), timeout=120)
        assert result.returncode == 0, (module, result.stderr[-1000:])
        assert "--" in result.stdout, module
    assert os.listdir(installed["elsewhere"]) == []


@pytest.mark.slow
def test_installed_quickstart_runs_from_another_directory(installed):
    """cleannet-quickstart (a few steps) runs every tool as an installed module; it used to
    run util/heldout_train_data.py by a path that exists in a checkout only."""
    work = installed["elsewhere"] / "qs"
    result = subprocess.run([sys.executable, str(installed["target"] / "bin" / "cleannet-quickstart"),
                             "--work_dir=%s" % work, "--n_step=30"], capture_output=True, text=True,
                            env=installed["env"], cwd=str(installed["elsewhere"]), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "$ python -m cleannet.tools.heldout_train_data" in result.stdout
    assert "Label-noise detection error on the test samples:" in result.stdout
    assert (work / "test_predictions.tsv").exists()


def test_train_helpfull_lists_every_spec_flag_with_help():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--helpfull"],
                            capture_output=True, text=True, env=ENV)
    text = result.stdout + result.stderr
    for name in ORIGINAL_TRAIN_FLAGS:
        match = re.search(r"^\s+--%s: (.*)$" % re.escape(name), text, re.MULTILINE)
        assert match, name
        assert len(match.group(1).strip()) > 3, (name, match.group(1))


def test_train_flagfile(tmp_path):
    """absl's --flagfile: the flags in the file are used (data dir, log dir, n_step=0)."""
    img_dim, num_ref, num_classes = 4, 2, 2
    data = tmp_path / "data"
    write_cleannet_data(data, img_dim=img_dim, num_classes=num_classes, num_ref=num_ref, n_train=8, n_val=8)
    flagfile = tmp_path / "train.flags"
    flagfile.write_text("\n".join([
        "--data_dir=%s" % data, "--checkpoint_dir=%s" % (tmp_path / "ckpt"), "--log_dir=%s" % (tmp_path / "log"),
        "--img_dim=%d" % img_dim, "--num_ref=%d" % num_ref, "--n_step=0", "--batch_size_sup=4",
        "--batch_size_unsup=0", "--val_batch_size=4", ""]))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--flagfile=%s" % flagfile],
                            capture_output=True, text=True, env=ENV, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "log" / "train").is_dir()  # --log_dir came from the file
    assert not (tmp_path / "train").exists()  # not the default ./train/log/
