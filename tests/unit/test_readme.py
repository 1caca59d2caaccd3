"""The README stays true: every setting and every error code is documented."""

from __future__ import annotations

import importlib
import re

from consumer import errors
from consumer.dev.reference_docs import SETTINGS_END, SETTINGS_START, settings_table
from tests.support import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_settings_table_is_current() -> None:
    start, end = README.index(SETTINGS_START) + len(SETTINGS_START), README.index(SETTINGS_END)
    assert README[start:end].strip() == settings_table().strip(), "settings changed: run `make docs`"


def _all_subclasses(cls: type[errors.VidgenError]) -> set[type[errors.VidgenError]]:
    return {cls} | {sub for child in cls.__subclasses__() for sub in _all_subclasses(child)}


def _table_codes(text: str) -> set[str]:
    """Codes that head a row of a markdown table: `| `code` | ...`."""
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))


def test_every_error_code_is_documented() -> None:
    """Every code a result event (or a start-up or command-line exit) can carry is a row of the README's error
    tables; codes answered only elsewhere (`in_results = False`: the job API's HTTP answers, the notifier's
    deliveries, the worker's own) are each a row of a table in the README or the docs."""
    classes = _all_subclasses(errors.VidgenError)
    assert {cls.__module__.rpartition(".")[0] for cls in classes} == {"consumer.errors"}  # all in one place
    in_results = {cls.code for cls in classes if cls.in_results}
    assert in_results <= _table_codes(README), f"README error table lacks: {sorted(in_results - _table_codes(README))}"
    docs = [README, *(path.read_text(encoding="utf-8") for path in sorted((REPO / "docs").rglob("*.md")))]
    elsewhere = {cls.code for cls in classes if not cls.in_results}
    assert elsewhere <= _table_codes("\n".join(docs)), sorted(elsewhere - _table_codes("\n".join(docs)))


def test_every_path_and_module_the_readme_names_exists() -> None:
    """Paths in backticks or links, relative to the repository or (as in the Architecture section) to `consumer/`,
    and dotted names of modules and their attributes."""
    quoted = re.findall(r"`([\w./-]+/[\w./-]*)`", README) + re.findall(r"\]\(((?!https?:)[\w./-]+)\)", README)
    roots = [REPO, REPO / "consumer"]
    # Files (a suffix) and folders (a trailing slash) under a folder of ours: not MIME types or protocol names.
    ours = {
        path
        for path in quoted
        if ("." in path.rsplit("/", 1)[-1] or path.endswith("/"))
        and any((root / path.split("/")[0]).is_dir() for root in roots)
    }
    missing = [path for path in sorted(ours - {"./demo-output/"}) if not any((root / path).exists() for root in roots)]
    assert missing == []
    for dotted in set(re.findall(r"`((?:consumer|schemas|producer_examples|bench)(?:\.\w+)+)`", README)):
        module, _, attribute = dotted.rpartition(".")
        try:
            importlib.import_module(dotted)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), attribute), dotted
