"""Keeps the README's settings table generated from the Settings model (`make docs`; a test checks it)."""

from __future__ import annotations

import sys
from pathlib import Path

from consumer.settings import Settings

__all__ = ["SETTINGS_END", "SETTINGS_START", "settings_table", "update_readme"]

SETTINGS_START = "<!-- settings:start -->"
SETTINGS_END = "<!-- settings:end -->"


def settings_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "hostname-pid" if field.default_factory is not None else field.default
        if isinstance(default, tuple):
            default = ",".join(default)
        if isinstance(default, bool):
            default = str(default).lower()
        shown = "(empty)" if default in (None, "") else f"`{default}`"
        rows.append(f"| `VIDGEN_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def update_readme(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(SETTINGS_START) + len(SETTINGS_START), text.index(SETTINGS_END)
    path.write_text(f"{text[:start]}\n{settings_table()}\n{text[end:]}", encoding="utf-8")


if __name__ == "__main__":
    update_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
