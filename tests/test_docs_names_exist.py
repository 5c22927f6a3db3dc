"""Every repository file path and dotted module name that README.md and docs/*.md mention
exists: a module that moved must not leave its old name in the docs.

Paths: words ending in .py or .md, and words under one of the repository's top-level
folders (`cleannet/tools/`, `docs/errors.md`, ...). Dotted names: words starting with one
of the repository's Python packages (`cleannet.scoring.ClassEmbeddingScorer`); the longest
prefix that is a module must exist, and the next part must be a name that module defines
(def, class, assignment or import), the part after a class a name its body defines.
The source is parsed, not imported."""

import ast
import functools
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def top_level_folders():
    return sorted(name for name in os.listdir(ROOT)
                  if os.path.isdir(os.path.join(ROOT, name)) and not name.startswith((".", "_")))


def python_packages():
    """Top-level folders holding Python files (util/ has no __init__.py but its names appear dotted)."""
    return [name for name in top_level_folders() if any(f.endswith(".py") for f in os.listdir(os.path.join(ROOT, name)))]


def placeholder(name):
    """A name with an upper-case placeholder part (bench/bench_X.py, noise_model/TOOL.py)."""
    return re.search(r"(?:^|[/._])[A-Z]+(?:[./]|$)", name) is not None


@functools.lru_cache(maxsize=None)
def repository_basenames():
    names = set()
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        names.update(files)
    return names


def doc_files():
    docs = os.path.join(ROOT, "docs")
    return ["README.md"] + ["docs/" + name for name in sorted(os.listdir(docs)) if name.endswith(".md")]


def doc_text(name):
    return open(os.path.join(ROOT, name), encoding="utf-8").read()


def mentioned_paths(text):
    """Repository-looking paths in a document: under a top-level folder, or a top-level .py/.md."""
    folders = "|".join(re.escape(f) for f in top_level_folders())
    under_folder = re.findall(r"(?<![\w./$-])((?:%s)/[\w./-]*[\w/])" % folders, text)
    top_files = re.findall(r"(?<![\w./$-])([A-Za-z_][\w-]*\.(?:py|md|toml))(?![\w/])", text)
    return sorted(set(under_folder) | set(top_files))


def path_exists(path, document):
    """A path from the root or the document's folder; a bare file name anywhere in the tree."""
    path = path.split("#")[0].rstrip("/")
    here = os.path.dirname(os.path.join(ROOT, document))
    if "/" not in path and path in repository_basenames():
        return True
    return os.path.exists(os.path.join(ROOT, path)) or os.path.exists(os.path.join(here, path))


def mentioned_modules(text):
    packages = "|".join(re.escape(p) for p in python_packages())
    found = re.findall(r"(?<![\w./-])((?:%s)(?:\.[A-Za-z_]\w*)+)" % packages, text)
    return sorted(set(name for name in found if name.rsplit(".", 1)[1] not in ("py", "md", "toml", "txt", "json")))


@functools.lru_cache(maxsize=None)
def module_tree(relative_path):
    return ast.parse(open(os.path.join(ROOT, relative_path), encoding="utf-8").read())


def defined_names(body):
    """Names a module or class body defines: def, class, assignment targets, imports."""
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and isinstance(
                    node.value, (ast.List, ast.Tuple)):  # a package's declared API (e.g. lazily imported)
                names.update(e.value for e in node.value.elts if isinstance(e, ast.Constant))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            names |= defined_names(node.body) | defined_names(getattr(node, "orelse", []))
    return names


def module_name_problem(dotted):
    """None when `dotted` names an existing module (and a name it defines), else why not."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        base = os.path.join(*parts[:split])
        if os.path.isfile(os.path.join(ROOT, base + ".py")):
            source = base + ".py"
        elif os.path.isfile(os.path.join(ROOT, base, "__init__.py")):
            source = os.path.join(base, "__init__.py")
        else:
            continue
        rest = parts[split:]
        if not rest:
            return None
        body = module_tree(source).body
        if rest[0] not in defined_names(body):
            if os.path.isdir(os.path.join(ROOT, base)) and split < len(parts):
                return "no module %s" % ".".join(parts[:split + 1])
            return "%s defines no %s" % (source, rest[0])
        classes = {n.name: n for n in body if isinstance(n, ast.ClassDef)}
        if len(rest) > 1 and rest[0] in classes and rest[1] not in defined_names(classes[rest[0]].body):
            return "class %s of %s defines no %s" % (rest[0], source, rest[1])
        return None
    return "no module %s" % parts[0]


def test_every_mentioned_path_exists():
    missing = ["%s: %s" % (doc, path) for doc in doc_files() for path in mentioned_paths(doc_text(doc))
               if not path_exists(path, doc) and not placeholder(path)]
    assert missing == []


def test_every_mentioned_module_exists():
    missing = ["%s: %s (%s)" % (doc, name, module_name_problem(name)) for doc in doc_files()
               for name in mentioned_modules(doc_text(doc)) if module_name_problem(name) and not placeholder(name)]
    assert missing == []


def test_the_checks_catch_moved_names():
    """The scanners find the stale names a newcomer met (issue: docs naming moved modules)."""
    text = ("see `util/training_loop.py` and util.tsv_reader.iter_tsv_chunks, "
            "cleannet.scoring.ClassEmbeddingScorer.score_against_all, cleannet.scoring.NoSuchThing, "
            "cleannet/tools/inference.py, docs/errors.md#bad-input, README.md and ./quickstart/train/log")
    assert mentioned_paths(text) == ["README.md", "cleannet/tools/inference.py", "docs/errors.md",
                                     "util/training_loop.py"]
    assert not path_exists("util/training_loop.py", "README.md")
    assert path_exists("docs/errors.md#bad-input", "README.md") and path_exists("errors.md", "docs/api.md")
    assert module_name_problem("util.tsv_reader.iter_tsv_chunks") is not None
    assert module_name_problem("cleannet.scoring.ClassEmbeddingScorer.score_against_all") is None
    assert module_name_problem("cleannet.scoring.ClassEmbeddingScorer.no_method") is not None
    assert module_name_problem("cleannet.scoring.NoSuchThing") is not None
    assert module_name_problem("cleannet.tools.inference") is None
    assert module_name_problem("cleannet.find_label_issues") is None  # declared in cleannet's __all__ (lazy)
    assert module_name_problem("cleannet.find_label_issue") is not None
    assert module_name_problem("util.errors.InputError") is not None  # moved to noisylabels
    assert placeholder("bench/bench_X.py") and placeholder("noise_model/TOOL.py") and not placeholder("util/x.py")
