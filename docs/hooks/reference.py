"""MkDocs hook (`hooks:` in mkdocs.yml): the site's generated parts, rendered from the code at every build so they
cannot drift. The work is in `consumer.dev.reference_docs`; this only plugs it into MkDocs' events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from consumer.dev.reference_docs import REPOSITORY_PAGES, api_pages, render_generated, repository_page

__all__ = ["on_files", "on_page_markdown"]

REPOSITORY = Path(__file__).resolve().parents[2]


def on_files(files: Files, config: Any) -> Files:
    """Add the API reference pages and the repository's CONTRIBUTING and CHANGELOG."""
    pages = api_pages(REPOSITORY)
    pages.update({page: repository_page(REPOSITORY, name) for page, name in REPOSITORY_PAGES.items()})
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace every generated block of a page with what the code says today."""
    return render_generated(markdown)
