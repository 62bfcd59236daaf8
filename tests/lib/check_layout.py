#!/usr/bin/python3
"""The layout rule of tests/ (CTest `tests_layout`): the Python oracle and driver plumbing live
in tests/lib, and a driver imports only from tests/lib, or from a library module of its own
folder, never from another driver's entry point or another folder.

  check_layout.py TESTS_DIR

For every .py file under TESTS_DIR, each imported module that is a file of tests/ must be
  - in tests/lib (a lib module may import only lib modules), or
  - in the importing file's own folder and not an entry point (no `if __name__ ==
    "__main__"`);
and no module name may exist both in tests/lib and in a test folder (which one an import finds
would depend on sys.path order).  Prints one line per problem and `N passed, M failed` (files).
"""
import ast
import os
import sys


def is_entry_point(path):
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)]
            consts = [n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)]
            if "__name__" in names and "__main__" in consts:
                return True
    return False


def imported_modules(path):
    """Top-level names of the absolute imports anywhere in the file (also inside functions)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    root = os.path.abspath(argv[1])
    lib = os.path.join(root, "lib")
    modules = {}  # module name -> [folders holding <name>.py]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for f in sorted(filenames):
            if f.endswith(".py"):
                modules.setdefault(f[:-3], []).append(dirpath)
                files.append(os.path.join(dirpath, f))
    problems = []
    bad_files = set()
    for name, dirs in sorted(modules.items()):
        if lib in dirs and len(dirs) > 1:
            problems.append("%s.py is in tests/lib and in %s" % (
                name, ", ".join(os.path.relpath(d, root) for d in dirs if d != lib)))
            bad_files.update(os.path.join(d, name + ".py") for d in dirs)
    for path in files:
        here = os.path.dirname(path)
        rel = os.path.relpath(path, root)
        before = len(problems)
        for mod in sorted(imported_modules(path)):
            dirs = modules.get(mod)
            if not dirs or lib in dirs:
                continue  # not a file of tests/ (stdlib, numpy, h5py), or a lib module
            if here == lib:
                problems.append("%s (tests/lib) imports %s from %s" % (
                    rel, mod, os.path.relpath(dirs[0], root)))
            elif here not in dirs:
                problems.append("%s imports %s from another folder (%s)" % (
                    rel, mod, os.path.relpath(dirs[0], root)))
            elif is_entry_point(os.path.join(here, mod + ".py")):
                problems.append("%s imports %s, an entry point: move what it needs to tests/lib"
                                % (rel, mod))
        if len(problems) > before:
            bad_files.add(path)
    for p in problems:
        print("FAIL " + p)
    print("checked %d Python files, %d modules in tests/lib" % (
        len(files), sum(1 for d in modules.values() if lib in d)))
    print("%d passed, %d failed" % (len(files) - len(bad_files), len(bad_files)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
