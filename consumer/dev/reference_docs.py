"""The docs site's generated parts (`make docs` builds the site; `docs/hooks/reference.py` calls these): blocks of a
page rendered from the code, one API reference page per package, and the repository's CONTRIBUTING and CHANGELOG
as pages. A generated block is written in a page as

    <!-- generated:settings consumer.settings.Settings -->
    (anything: what GitHub shows, replaced on the site)
    <!-- /generated -->

with a kind (`settings`: a settings model; `cli`: a function returning an `argparse` parser; `acls`: a function
returning every component's topic access, rendered as the Kafka ACL table and its `kafka-acls.sh` commands) and the
dotted name of what it documents, so a new setting, argument or topic is on the site without anyone writing it
down."""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Callable
from pathlib import Path

from pydantic_settings import BaseSettings

from consumer.dev.acl_docs import acl_markdown
from consumer.dev.cli_reference import cli_reference
from consumer.dev.settings_reference import settings_reference
from consumer.kafka.topic_access import ComponentAccess

__all__ = [
    "API_PACKAGE_ROOTS",
    "GENERATED_BLOCK",
    "REPOSITORY_PAGES",
    "api_pages",
    "generated_blocks",
    "render_generated",
    "repository_page",
    "resolve",
]

GENERATED_BLOCK = re.compile(
    r"^<!-- generated:(?P<kind>[a-z]+) (?P<target>[\w.]+) -->\n.*?^<!-- /generated -->$", re.DOTALL | re.MULTILINE
)
API_PACKAGE_ROOTS = ("consumer", "schemas", "producer_examples")
REPOSITORY_PAGES = {"contributing.md": "CONTRIBUTING.md", "changelog.md": "CHANGELOG.md"}
"""Site page -> file at the repository root: the files contributors look for, on the site too."""


def resolve(target: str) -> object:
    """The object a dotted name names: `package.module.attribute`."""
    module, _, attribute = target.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _render(kind: str, target: str) -> str:
    found = resolve(target)
    if kind == "settings" and isinstance(found, type) and issubclass(found, BaseSettings):
        return settings_reference(found)
    if kind == "cli" and callable(found):
        factory: Callable[[], object] = found
        parser = factory()
        if isinstance(parser, argparse.ArgumentParser):
            return cli_reference(parser)
    if kind == "acls" and callable(found):
        reader: Callable[[], object] = found
        access = reader()
        if isinstance(access, tuple) and access and all(isinstance(row, ComponentAccess) for row in access):
            return acl_markdown(access)
    raise ValueError(f"generated block: cannot render {kind} {target}")


def generated_blocks(markdown: str) -> list[tuple[str, str]]:
    """The (kind, dotted name) of every generated block in a page."""
    return [(match["kind"], match["target"]) for match in GENERATED_BLOCK.finditer(markdown)]


def render_generated(markdown: str) -> str:
    """The page with every generated block replaced by what the code says today."""
    return GENERATED_BLOCK.sub(lambda match: _render(match["kind"], match["target"]), markdown)


def api_pages(repository: Path) -> dict[str, str]:
    """One page per package (a folder with `__init__.py`) under the API roots, keyed by its path in the site: the
    package's docstring and public members, then each of its modules (mkdocstrings reads them statically)."""
    pages = {}
    for root in API_PACKAGE_ROOTS:
        for init in sorted((repository / root).rglob("__init__.py")):
            dotted = ".".join(init.parent.relative_to(repository).parts)
            modules = sorted(path.stem for path in init.parent.glob("*.py") if not path.stem.startswith("_"))
            blocks = [f"# `{dotted}`", f"::: {dotted}\n    options:\n      show_root_heading: false"]
            blocks += [f"::: {dotted}.{module}" for module in modules]
            pages[f"reference/api/{dotted}.md"] = "\n\n".join(blocks) + "\n"
    return pages


def repository_page(repository: Path, name: str) -> str:
    """A file at the repository root as a site page: its links into `docs/` and to the other such files made
    relative to the site's root."""
    text = re.sub(r"\]\(docs/", "](", (repository / name).read_text(encoding="utf-8"))
    for page, file in REPOSITORY_PAGES.items():
        text = text.replace(f"]({file})", f"]({page})")
    return text
