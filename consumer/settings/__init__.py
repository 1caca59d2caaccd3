"""The one configuration object, read from `VIDGEN_*` environment variables once at start-up.

`Settings` is composed of one model per concern (`consumer.settings.messaging`, `processing`, `media`, `service`);
a component that needs one concern takes that model, so its signature says what it reads. Every variable keeps its
`VIDGEN_` name: the concerns only group them."""

from __future__ import annotations

import json
import re

from pydantic import AliasChoices, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from consumer.settings.field_errors import field_errors
from consumer.settings.media import ImageSettings, MemorySettings, RenderSettings, StorageSettings
from consumer.settings.messaging import KafkaSettings, TopicSettings
from consumer.settings.pools import TEMPLATE_MODEL, template_pool_names
from consumer.settings.processing import RetrySettings, SchedulingSettings, TenantPolicySettings
from consumer.settings.service import ServiceSettings
from consumer.settings.webhooks import WebhookSettings

__all__ = [
    "ConfigurationError",
    "ImageSettings",
    "KafkaSettings",
    "MemorySettings",
    "RenderSettings",
    "RetrySettings",
    "SchedulingSettings",
    "ServiceSettings",
    "Settings",
    "StorageSettings",
    "TenantPolicySettings",
    "TopicSettings",
    "WebhookSettings",
    "describe_config_error",
    "environment_of",
    "variable_names",
]

ConfigurationError = (ValidationError, SettingsError)
"""What building a settings object from the environment raises: a rule broken, or a value that is not valid JSON."""


class Settings(
    KafkaSettings,
    TopicSettings,
    SchedulingSettings,
    RetrySettings,
    TenantPolicySettings,
    StorageSettings,
    ImageSettings,
    RenderSettings,
    MemorySettings,
    ServiceSettings,
    WebhookSettings,
):
    """Every knob of the worker. Built once in the entry point and passed down; never read elsewhere."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    def template_pool(self) -> Settings:
        """The settings of a template worker beside this GPU pool: `VIDGEN_MODEL=template` on CPU, reading the
        template topic, with a consumer group, retry and bulk topic of its own (shared ones would hand its retries
        to the GPU pool, and the GPU pool's bulk backlog to it); results, bucket and the rest the same. Compose and
        deploy/k8s name them the same way (`consumer.settings.pools`)."""
        names = template_pool_names(self.template_topic, self.consumer_group)
        update = {"model": TEMPLATE_MODEL, "device": "cpu", "worker_id": f"{self.worker_id}-template", **names}
        return self.model_copy(update=update)

    def as_environment(self) -> dict[str, str]:
        """The `VIDGEN_*` variables that rebuild these settings in another process (unset fields left out).
        Secrets are revealed here on purpose: a child worker needs them; never log the result."""
        return environment_of(self, "VIDGEN_")


def environment_of(settings: BaseSettings, prefix: str) -> dict[str, str]:
    """The environment variables (`prefix` + field name) that rebuild `settings` in another process; unset fields
    are left out and secrets revealed (never log the result)."""
    environment = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, dict):
            value = json.dumps(value)  # what pydantic-settings parses a dict field from
        environment[f"{prefix}{name.upper()}"] = str(value)
    return environment


def variable_names(model: type[BaseSettings], name: str) -> list[str]:
    """The environment variables that set field `name`: its validation aliases, else the prefix and the name."""
    alias = model.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    return [f"{model.model_config.get('env_prefix', '')}{name}".upper()]


def describe_config_error(error: ValidationError | SettingsError, model: type[BaseSettings] | None = None) -> str:
    """Where and why, one indented line per variable at fault, never the input: it may hold a secret or a URL with a
    token. With the `model` that raised it, each line names the environment variable (`VIDGEN_API_ID_KEY`), else
    the field (`id_key`)."""

    def name_of(field: str) -> str:
        if model is None or field not in model.model_fields:
            return field  # already a variable's name (a field's alias)
        return " or ".join(variable_names(model, field))

    if isinstance(error, SettingsError):  # a variable that is not valid JSON; the message names the field
        found = re.search(r'field "(\w+)"', str(error))
        return f"  {name_of(found.group(1))}: not valid JSON" if found else f"  {error}"
    return "\n".join(f"  {line}" for line in field_errors(error, name_of if model is not None else None))
