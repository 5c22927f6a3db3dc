"""Issue 17: one helper (noisylabels.fileio.same_file) decides whether an output path names an
input, resolving symbolic links (also of a directory above an output that does not exist
yet) and hard links (same device and inode); every tool's output-vs-input check uses it."""

import os
import subprocess
import sys

import pytest

from noisylabels.errors import InputError
from noisylabels.fileio import refuse_output_equal_to_inputs, same_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def files(tmp_path):
    (tmp_path / "input.txt").write_text("precious")
    (tmp_path / "other.txt").write_text("other")
    os.symlink(tmp_path / "input.txt", tmp_path / "symlink.txt")
    os.link(tmp_path / "input.txt", tmp_path / "hardlink.txt")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path, tmp_path / "sub" / "up")  # sub/up/input.txt is input.txt
    os.symlink(tmp_path / "gone.txt", tmp_path / "dangling.txt")
    return tmp_path


@pytest.mark.parametrize("output, same", [
    ("input.txt", True), ("symlink.txt", True), ("hardlink.txt", True), ("sub/up/input.txt", True),
    ("sub/../input.txt", True), ("other.txt", False), ("new.txt", False), ("sub/up/new.txt", False),
    ("dangling.txt", False),
])
def test_same_file(files, output, same):
    assert same_file(str(files / output), str(files / "input.txt")) is same
    assert same_file(str(files / "input.txt"), str(files / output)) is same


def test_refusal_names_the_output_flag_and_the_input(files):
    with pytest.raises(InputError) as err:
        refuse_output_equal_to_inputs({"output_file": str(files / "hardlink.txt")}, [("--input", str(files / "input.txt"))])
    assert str(err.value).startswith("%s: --output_file: is also --input (%s); writing it would destroy that input"
                                     % (files / "hardlink.txt", files / "input.txt"))
    assert (files / "input.txt").read_text() == "precious"


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_import_caffemodel_refuses_an_output_linked_to_its_caffemodel(tmp_path, link):
    caffemodel = tmp_path / "net.caffemodel"
    caffemodel.write_bytes(b"\x0a\x03net")
    output = tmp_path / "net.weights.h5"
    (os.symlink if link == "symlink" else os.link)(caffemodel, output)
    result = subprocess.run([sys.executable, "-m", "noise_model.import_caffemodel", "--caffemodel=%s" % caffemodel,
                             "--model=cifar_quick", "--output=%s" % output], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: %s: --output: is also --caffemodel (%s); writing it would destroy that input: choose "
                      "another output path" % (output, caffemodel)], result.stderr[-2000:]
    assert caffemodel.read_bytes() == b"\x0a\x03net"


def test_clothing1m_refuses_an_output_that_is_one_of_its_lists(tmp_path):
    """prepare_clothing1m writes OUT/clean_train.txt, ...; a link there to an input list is refused
    before any list is read (no images are needed for that)."""
    from noise_model.data import clothing1m

    root = tmp_path / "root"
    root.mkdir()
    (root / clothing1m.NOISY_KV).write_text("images/a.jpg 1\n")
    out = tmp_path / "out"
    out.mkdir()
    os.link(root / clothing1m.NOISY_KV, out / "test.txt")
    with pytest.raises(InputError) as err:
        clothing1m.prepare_clothing1m(str(root), str(out))
    assert str(err.value).startswith("%s: --output_dir: is also a list of --data_root (%s)"
                                     % (out / "test.txt", root / clothing1m.NOISY_KV))
    assert (root / clothing1m.NOISY_KV).read_text() == "images/a.jpg 1\n"
