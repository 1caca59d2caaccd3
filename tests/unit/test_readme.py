"""The README stays true: every setting and every error code is documented."""

from __future__ import annotations

import re

from consumer import errors
from consumer.dev.docs import SETTINGS_END, SETTINGS_START, settings_table
from tests.support import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_settings_table_is_current() -> None:
    start, end = README.index(SETTINGS_START) + len(SETTINGS_START), README.index(SETTINGS_END)
    assert README[start:end].strip() == settings_table().strip(), "settings changed: run `make docs`"


def _all_subclasses(cls: type[errors.VidgenError]) -> set[type[errors.VidgenError]]:
    return {cls} | {sub for child in cls.__subclasses__() for sub in _all_subclasses(child)}


def test_every_error_code_is_documented() -> None:
    import consumer.app  # noqa: F401 - imports every module that defines an error class

    codes = {cls.code for cls in _all_subclasses(errors.VidgenError)}
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", README, flags=re.MULTILINE))
    assert codes <= documented, f"README error table lacks: {sorted(codes - documented)}"

