"""Library code is callable from Python: in the installed packages only a tool's entry
functions read absl's FLAGS (`main`, `run`, `define_flags` / `define_*`, `*_from_flags`),
and nothing forks the process. noisylabels/flagutil.py is the flag layer itself."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("cleannet", "noise_model", "noisylabels")
FLAG_LAYER = os.path.join("noisylabels", "flagutil.py")


def is_entry(name):
    return name in ("main", "run") or name.startswith("define_") or name == "define_flags" or name.endswith(
        "from_flags")


def package_sources():
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(directory, name), ROOT)


def reads_flags(node):
    """True when the subtree uses the name FLAGS or the attribute .FLAGS (flags.FLAGS)."""
    return any((isinstance(n, ast.Name) and n.id == "FLAGS") or (isinstance(n, ast.Attribute) and n.attr == "FLAGS")
               for n in ast.walk(node))


def flag_readers(tree):
    """Names of the top-level functions and methods (outermost) whose bodies read FLAGS."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) or isinstance(node, ast.Module):
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and reads_flags(child):
                    found.append(child.name)
    return found


def test_only_entry_functions_read_flags():
    offenders = []
    for path in package_sources():
        if path == FLAG_LAYER:
            continue
        tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
        offenders += ["%s:%s" % (path, name) for name in flag_readers(tree) if not is_entry(name)]
    assert offenders == []


def test_no_fork_in_the_packages():
    for path in package_sources():
        tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in ("fork", "forkpty")]
        assert not calls, path


def test_the_scan_finds_a_working_function_reading_flags():
    tree = ast.parse("def main():\n    FLAGS.x\n\ndef work(a):\n    return flags.FLAGS.y + a\n\n"
                     "class T:\n    def method(self):\n        return FLAGS.z\n")
    assert [name for name in flag_readers(tree) if not is_entry(name)] == ["work", "method"]
