"""The configuration reference, generated from the settings models when the docs site is built: one table of
environment variables per model, and one per concern for a model composed of concerns (the worker's `Settings`)."""

from __future__ import annotations

import inspect

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from consumer.settings import variable_names

__all__ = ["concerns_of", "settings_reference", "settings_table"]

_HEADER = ["| Variable | Default | Meaning |", "|---|---|---|"]


def concerns_of(model: type[BaseSettings]) -> list[type[BaseSettings]]:
    """The models `model` is composed of (its direct settings bases that declare fields), or `[model]` itself when
    it is one model, perhaps extending another (`ApiSettings` extends `KeysFileSettings`: one table)."""
    bases = [base for base in model.__bases__ if issubclass(base, BaseSettings) and base is not BaseSettings]
    return bases if len(bases) > 1 else [model]


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    if field.default_factory is not None:
        if field.default_factory in (dict, list, tuple):
            return "(empty)"
        return "(computed at start-up)"
    default = field.default
    if isinstance(default, tuple):
        default = ",".join(str(part) for part in default)
    if isinstance(default, bool):
        default = str(default).lower()
    if isinstance(default, dict):
        default = "" if not default else str(default)
    return "(empty)" if default in (None, "") else f"`{default}`"


def _is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr or SecretStr in getattr(field.annotation, "__args__", ())


def settings_table(model: type[BaseSettings], names: list[str] | None = None) -> str:
    """A markdown table of `model`'s variables (or of the fields in `names`), in declaration order."""
    rows = list(_HEADER)
    for name in names if names is not None else list(model.model_fields):
        field = model.model_fields[name]
        variables = " or ".join(f"`{variable}`" for variable in variable_names(model, name))
        secret = " (secret: never logged)" if _is_secret(field) else ""
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {variables}{secret} | {_default(field)} | {meaning} |")
    return "\n".join(rows)


def settings_reference(model: type[BaseSettings], *, heading_level: int = 3) -> str:
    """The model's docstring, then a table per concern under a heading naming the concern's class."""
    parts = [inspect.cleandoc(model.__doc__ or "")]
    concerns = concerns_of(model)
    if concerns == [model]:
        parts.append(settings_table(model))
        return "\n\n".join(part for part in parts if part)
    for concern in concerns:
        parts.append(f"{'#' * heading_level} `{concern.__name__}`")
        parts.append(inspect.cleandoc(concern.__doc__ or ""))
        parts.append(settings_table(model, list(concern.model_fields)))
    return "\n\n".join(part for part in parts if part)
