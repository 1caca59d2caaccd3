"""Keeps the README's settings tables generated from the settings models (`make docs`; tests check them): the
worker's `Settings` and the job API's `ApiSettings`."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic_settings import BaseSettings

from consumer.api.api_settings import ApiSettings
from consumer.settings import Settings

__all__ = [
    "API_SETTINGS_END",
    "API_SETTINGS_START",
    "SETTINGS_END",
    "SETTINGS_START",
    "api_settings_table",
    "settings_table",
    "update_readme",
]

SETTINGS_START = "<!-- settings:start -->"
SETTINGS_END = "<!-- settings:end -->"
API_SETTINGS_START = "<!-- api-settings:start -->"
API_SETTINGS_END = "<!-- api-settings:end -->"


def settings_table(model: type[BaseSettings] = Settings, prefix: str = "VIDGEN_") -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    # A model composed of one model per concern (`Settings`) lists its fields concern by concern.
    concerns = [base for base in model.__bases__ if issubclass(base, BaseSettings) and base is not BaseSettings]
    names = [name for base in concerns for name in base.model_fields] or list(model.model_fields)
    for name in names:
        field = model.model_fields[name]
        default = "hostname-pid" if field.default_factory is not None else field.default
        if isinstance(default, tuple):
            default = ",".join(default)
        if isinstance(default, bool):
            default = str(default).lower()
        shown = "(empty)" if default in (None, "") else f"`{default}`"
        if field.is_required():
            shown = "(required)"
        rows.append(f"| `{prefix}{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def api_settings_table() -> str:
    return settings_table(ApiSettings, "VIDGEN_API_")


_TABLES = ((SETTINGS_START, SETTINGS_END, settings_table), (API_SETTINGS_START, API_SETTINGS_END, api_settings_table))


def update_readme(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for start_marker, end_marker, table in _TABLES:
        start, end = text.index(start_marker) + len(start_marker), text.index(end_marker)
        text = f"{text[:start]}\n{table()}\n{text[end:]}"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    update_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
