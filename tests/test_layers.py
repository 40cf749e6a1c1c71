"""The layering rule: `fastgen/utils` imports nothing of ours above it (not even lazily inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import fastgen

UTILS = Path(fastgen.__file__).parent / "utils"


def _fastgen_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return [n for n in names if n == "fastgen" or n.startswith("fastgen.")]


def test_utils_imports_only_utils():
    files = sorted(UTILS.rglob("*.py"))
    assert len(files) >= 10  # the walk really sees the package
    upward = {
        f"{path.relative_to(UTILS.parent)}: {name}"
        for path in files
        for name in _fastgen_imports(path)
        if not name.startswith("fastgen.utils")
    }
    assert upward == set()
