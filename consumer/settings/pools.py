"""Which pool a worker serves follows from its model: a template worker (`VIDGEN_MODEL=template`) reads the template
pool's topics in the template pool's consumer group, any other worker the GPU pool's.

`worker_settings` is applied when a worker starts. Topic and group settings left unset follow the model, so
`VIDGEN_MODEL=template` alone makes a template worker; settings that contradict the model (a template worker on the
GPU pool's requests topic, a model worker in the template pool's group...) stop the worker before it joins any group,
with one line naming them. `template_pool_names` is the one definition of the template pool's names
(`Settings.template_pool()`, compose and deploy/k8s use the same)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumer.errors import VidgenError

if TYPE_CHECKING:
    from consumer.settings import Settings

__all__ = [
    "POOL_MISMATCH",
    "TEMPLATE_GROUP_SUFFIX",
    "TEMPLATE_MODEL",
    "pool_conflicts",
    "template_pool_names",
    "worker_settings",
]

POOL_MISMATCH = "pool_mismatch"  # the start-up error code
TEMPLATE_MODEL = "template"
TEMPLATE_GROUP_SUFFIX = "-template"
_POOL_FIELDS = ("requests_topic", "bulk_topic", "retry_topic")


def template_pool_names(template_topic: str, gpu_group: str) -> dict[str, str]:
    """The template pool's input topics and consumer group, beside a GPU pool in group `gpu_group`: the template
    topic with a retry and a bulk topic of its own (shared ones would hand its retries to the GPU pool, and the GPU
    pool's bulk backlog to it), and a group of its own."""
    return {
        "requests_topic": template_topic,
        "bulk_topic": f"{template_topic}.bulk",
        "retry_topic": f"{template_topic}.retry",
        "consumer_group": f"{gpu_group}{TEMPLATE_GROUP_SUFFIX}",
    }


def worker_settings(settings: Settings) -> Settings:
    """The settings a worker runs with: for a template worker, its pool's topics and group wherever they were left
    unset. Raises `VidgenError` (`pool_mismatch`) when what is set contradicts the model: the worker would take the
    other pool's requests."""
    if settings.model == TEMPLATE_MODEL:
        derived = template_pool_names(settings.template_topic, settings.consumer_group)
        unset = {name: value for name, value in derived.items() if name not in settings.model_fields_set}
        settings = settings.model_copy(update=unset)
    conflicts = pool_conflicts(settings)
    if conflicts:
        raise VidgenError("; ".join(conflicts), code=POOL_MISMATCH)
    return settings


def pool_conflicts(settings: Settings) -> list[str]:
    """Each setting that puts this worker in the other pool, as a sentence naming the variables (topic and group
    names are no secrets)."""
    template = template_pool_names(settings.template_topic, "")
    if settings.model == TEMPLATE_MODEL:
        wrong = [name for name in _POOL_FIELDS if getattr(settings, name) != template[name]]
        found = [
            f"VIDGEN_MODEL=template reads the template pool's topics, but {_var(name)}={getattr(settings, name)} "
            f"is not {template[name]}: unset it (a template worker derives it from VIDGEN_TEMPLATE_TOPIC)"
            for name in wrong
        ]
        if not settings.consumer_group.endswith(TEMPLATE_GROUP_SUFFIX):
            found.append(
                f"VIDGEN_MODEL=template needs a consumer group of its own, but VIDGEN_CONSUMER_GROUP="
                f"{settings.consumer_group} does not end in {TEMPLATE_GROUP_SUFFIX}: unset it (a template worker "
                f"joins video-renderers{TEMPLATE_GROUP_SUFFIX})"
            )
        return found
    theirs = {template[name] for name in _POOL_FIELDS}
    found = [
        f"VIDGEN_MODEL={settings.model} renders for the GPU pool, but {_var(name)}={getattr(settings, name)} is "
        "the template pool's (VIDGEN_TEMPLATE_TOPIC): set VIDGEN_MODEL=template or another topic"
        for name in _POOL_FIELDS
        if getattr(settings, name) in theirs
    ]
    if settings.consumer_group.endswith(TEMPLATE_GROUP_SUFFIX):
        found.append(
            f"VIDGEN_MODEL={settings.model} renders for the GPU pool, but VIDGEN_CONSUMER_GROUP="
            f"{settings.consumer_group} is a template pool's group (it ends in {TEMPLATE_GROUP_SUFFIX})"
        )
    return found


def _var(field: str) -> str:
    return f"VIDGEN_{field.upper()}"
