"""One name, one thing: no two classes of the project share a name, nested and private ones included.

A class name that appears twice makes a reader (and a traceback, a log line, a grep) guess which one is meant. Read
from the source with `ast`, so a module that is never imported is checked too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.support import REPO

PACKAGES = ("consumer", "schemas", "producer_examples", "bench")


def class_definitions(root: Path, packages: tuple[str, ...]) -> dict[str, list[str]]:
    """Every class name defined under `packages` of `root`, with where (`path:line`) each definition is."""
    found: dict[str, list[str]] = defaultdict(list)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    found[node.name].append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    return found


def test_no_two_classes_share_a_name() -> None:
    found = class_definitions(REPO, PACKAGES)
    assert len(found) > 100  # the walk did read the project
    duplicated = {name: places for name, places in sorted(found.items()) if len(places) > 1}
    assert duplicated == {}, f"class names defined more than once: {duplicated}"


def test_a_duplicated_class_name_is_reported(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("class Job:\n    pass\n", encoding="utf-8")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("def f():\n    class Job:\n        pass\n", encoding="utf-8")
    assert class_definitions(tmp_path, ("pkg",))["Job"] == ["pkg/a.py:1", "pkg/sub/b.py:2"]
