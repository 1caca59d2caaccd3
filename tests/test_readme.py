"""The README stays true: every setting and every error code is documented."""

from __future__ import annotations

import re
from pathlib import Path

from consumer import errors
from consumer.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_settings_table() -> None:
    missing = [name for name in Settings.model_fields if f"`VIDGEN_{name.upper()}`" not in README]
    assert not missing, f"README settings table lacks: {missing}"


def test_every_error_code_is_documented() -> None:
    codes = {cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.VidgenError)}
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", README, flags=re.MULTILINE))
    assert codes <= documented, f"README error table lacks: {sorted(codes - documented)}"
