"""The docs stay true: every setting, command, error code and package is documented, and every path and module a page
names exists. (`make test` also builds the site with `mkdocs build --strict`: broken links and pages fail there.)"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from consumer import errors
from consumer.cli import build_parser
from consumer.dev.cli_reference import subcommands
from consumer.dev.reference_docs import REPOSITORY_PAGES, api_pages, generated_blocks, render_generated, resolve
from consumer.settings import variable_names
from tests.support import REPO

DOCS = REPO / "docs"
PAGES = sorted(path for path in DOCS.rglob("*.md") if "_pending" not in path.parts)
# The front door and the files contributors read: held to the same rules as the site's pages. The CHANGELOG is
# left out on purpose: it names paths as they were.
CHECKED = [REPO / "README.md", REPO / "CONTRIBUTING.md", *PAGES]
# Pages the site's hook writes at build time: links to them are fine though no file holds them.
GENERATED = {DOCS / page for page in [*api_pages(REPO), *REPOSITORY_PAGES]}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _settings_classes() -> set[type[BaseSettings]]:
    """Every settings model the code defines: classes whose bases are named `...Settings`, imported and checked."""
    found: set[type[BaseSettings]] = set()
    for root in ("consumer", "producer_examples"):
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(_text(path))):
                if not isinstance(node, ast.ClassDef):
                    continue
                if any(ast.unparse(base).endswith("Settings") for base in node.bases):
                    module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                    cls = getattr(importlib.import_module(module), node.name)
                    if isinstance(cls, type) and issubclass(cls, BaseSettings):
                        found.add(cls)
    return found


def test_the_configuration_reference_lists_every_variable_of_every_settings_model() -> None:
    page = _text(DOCS / "reference" / "configuration.md")
    documented = [resolve(target) for kind, target in generated_blocks(page) if kind == "settings"]
    covered = {base for model in documented if isinstance(model, type) for base in model.__mro__}
    missing = sorted(cls.__qualname__ for cls in _settings_classes() - covered)
    assert missing == [], f"settings models the configuration reference does not render: {missing}"
    rendered = render_generated(page)
    for model in documented:
        assert isinstance(model, type) and issubclass(model, BaseSettings)
        for name in model.model_fields:
            for variable in variable_names(model, name):
                assert f"`{variable}`" in rendered, variable
    assert "VIDGEN_API_JWT_JWKS_URL" in rendered and "VIDGEN_HOOK_ID_KEY" in rendered


def test_the_cli_reference_documents_every_command() -> None:
    rendered = render_generated(_text(DOCS / "reference" / "cli.md"))
    for name in subcommands(build_parser()):
        assert f"`vidgen {name}`" in rendered, name
    assert "`vidgen api-key create`" in rendered and "`--keys-file KEYS_FILE`" in rendered
    assert "`--priority {interactive,bulk}`" in rendered and "`--gpus all\\|N\\|0,2,5`" in rendered


def test_a_generated_block_naming_something_it_cannot_render_fails_the_build() -> None:
    page = "<!-- generated:settings consumer.cli.build_parser -->\nshown on GitHub\n<!-- /generated -->\n"
    with pytest.raises(ValueError, match=r"cannot render settings consumer\.cli\.build_parser"):
        render_generated(page)


def _all_subclasses(cls: type[errors.VidgenError]) -> set[type[errors.VidgenError]]:
    return {cls} | {sub for child in cls.__subclasses__() for sub in _all_subclasses(child)}


def _table_codes(text: str) -> set[str]:
    """Codes that head a row of a markdown table: `| `code` | ...`."""
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))


def test_every_error_code_is_in_the_contracts_table() -> None:
    """Every error class lives in `consumer.errors`; every code a result event (or a start-up or command-line exit)
    can carry is a row of the event contract's error tables; codes answered only elsewhere (`in_results = False`:
    the job API's HTTP answers, the notifier's deliveries, the worker's own) are each a row of a table in the docs."""
    import consumer.worker.wiring  # noqa: F401 - imports every module of the worker that defines an error class
    import producer_examples.notifier  # noqa: F401 - and the notifier's (its dead letters' codes)

    classes = _all_subclasses(errors.VidgenError)
    assert {cls.__module__.rpartition(".")[0] for cls in classes} == {"consumer.errors"}  # all in one place
    contract = _table_codes(_text(DOCS / "event-contract.md"))
    in_results = {cls.code for cls in classes if cls.in_results}
    assert in_results <= contract, f"the event contract's error table lacks: {sorted(in_results - contract)}"
    documented = _table_codes("\n".join(_text(path) for path in sorted(DOCS.rglob("*.md"))))
    elsewhere = {cls.code for cls in classes if not cls.in_results}
    assert elsewhere <= documented, f"no docs table names: {sorted(elsewhere - documented)}"


# What `make demo`, `make docs` and `make test` write (gitignored): absent in a fresh clone, or only partly there.
_WRITTEN_BY_MAKE = ("./demo-output/", "site/", "test-results/")


@pytest.mark.parametrize("path", CHECKED, ids=lambda path: str(path.relative_to(REPO)))
def test_every_path_and_module_a_page_names_exists(path: Path) -> None:
    """Paths in backticks or links, relative to the repository, to `consumer/` (as in the architecture page) or to
    the page itself, and dotted names of modules and their attributes."""
    text = _text(path)
    quoted = re.findall(r"`([\w./-]+/[\w./-]*)`", text)
    linked = re.findall(r"\]\(((?!https?:)[\w./-]+)(?:#[\w-]*)?\)", text)
    roots = [REPO, REPO / "consumer", path.parent]
    # Files (a suffix) and folders (a trailing slash) under a folder of ours: not MIME types or protocol names.
    ours = {
        found
        for found in quoted + linked
        if ("." in found.rsplit("/", 1)[-1] or found.endswith("/"))
        and any((root / found.split("/")[0]).is_dir() for root in roots)
    }
    site_root = DOCS if path.parent == REPO else path.parent  # CONTRIBUTING's `docs/...` links are the site's
    generated = {found for found in ours if (site_root / found.removeprefix("docs/")).resolve() in GENERATED}
    absent = sorted(found for found in ours - generated if not found.startswith(_WRITTEN_BY_MAKE))
    missing = [found for found in absent if not any((root / found).exists() for root in roots)]
    assert missing == []
    for dotted in set(re.findall(r"`((?:consumer|schemas|producer_examples|bench)(?:\.\w+)+)`", text)):
        module, _, attribute = dotted.rpartition(".")
        try:
            importlib.import_module(dotted)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), attribute), dotted


def test_every_test_a_page_names_exists() -> None:
    """The threat model (and any page) names the tests that prove its guarantees: `tests/<path>.py::test_name`."""
    named = [ref for page in CHECKED for ref in re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", _text(page))]
    assert len(named) > 100
    missing = []
    for path, name in named:
        tree = ast.parse(_text(REPO / path)) if (REPO / path).is_file() else ast.Module(body=[], type_ignores=[])
        functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
        if name not in functions:
            missing.append(f"{path}::{name}")
    assert missing == []


def _nav_pages(nav: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            pages += _nav_pages(value) if isinstance(value, list) else [str(value)]
    return pages


def test_every_package_has_an_api_reference_page_in_the_nav_and_every_page_is_there() -> None:
    config = yaml.safe_load(_text(REPO / "mkdocs.yml"))
    nav = _nav_pages(config["nav"])
    api = [page for page in nav if page.startswith("reference/api/")]
    assert sorted(api) == sorted(api_pages(REPO)), "packages changed: list their API pages in mkdocs.yml's nav"
    written = [str(page.relative_to(DOCS)) for page in PAGES]
    assert sorted(set(nav) - set(api) - {"contributing.md", "changelog.md"}) == sorted(written)


def test_the_readme_is_a_front_door_with_the_two_commands() -> None:
    readme = _text(REPO / "README.md")
    assert len(readme.splitlines()) <= 250
    assert "make demo" in readme and "make test" in readme
    makefile = _text(REPO / "Makefile")
    for target in ("demo", "test", "docs"):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), target
    assert re.search(r"^test:.*\bdocs\b", makefile, flags=re.MULTILINE), "make test builds the docs strictly"


def test_the_license_is_the_apache_2_text_the_package_metadata_claims() -> None:
    pyproject = _text(REPO / "pyproject.toml")
    assert 'license = { text = "Apache-2.0" }' in pyproject
    license_text = _text(REPO / "LICENSE")
    assert license_text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in license_text and "END OF TERMS AND CONDITIONS" in license_text
