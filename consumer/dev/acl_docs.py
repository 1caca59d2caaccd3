"""The documentation's Kafka ACL table, rendered from the code's own topic list (`consumer.kafka.topic_access`): who
reads and writes which topic, the literal `kafka-acls.sh` commands that grant exactly that, and what a prefixed ACL
would grant beyond it. The docs site renders it at every build from a generated block of the security page,

    <!-- generated:acls consumer.dev.acl_docs.default_access -->
    <!-- /generated -->

(`consumer.dev.reference_docs`), so the table can never drift from the code."""

from __future__ import annotations

from collections.abc import Iterable

from consumer.kafka.topic_access import ComponentAccess, prefixed_grant_leaks, topic_access
from consumer.settings import Settings
from producer_examples.notifier_settings import NotifierSettings

__all__ = ["acl_markdown", "default_access"]


def default_access() -> tuple[ComponentAccess, ...]:
    """The access of every component with every setting at its default, whatever this process's environment."""
    notifier = NotifierSettings.model_fields
    return topic_access(
        Settings.model_construct(),
        notifier_group=notifier["group"].default,
        notifier_dlq_topic=notifier["dlq_topic"].default,
    )


def acl_markdown(access: tuple[ComponentAccess, ...]) -> str:
    """The table (one row per component), its notes, one literal `kafka-acls.sh` command per component and operation,
    and what a prefixed Write ACL would grant each component beyond its row."""
    lines = [
        "| Component | Runs as | Reads (Read) | Writes (Write) | Offsets only (Describe) | Consumer group | "
        "Creates with `VIDGEN_CREATE_TOPICS=true` |",
        "|---|---|---|---|---|---|---|",
    ]
    for component in access:
        groups = [f"{_names(component.groups)} (Read)"] if component.groups else []
        if component.watched_groups:
            groups.append(f"{_names(component.watched_groups)} (Describe)")
        lines.append(
            f"| {component.name}: `{component.command}` | `{component.principal}` | {_names(component.reads)} | "
            f"{_names(component.writes)} | {_names(component.watches)} | {'; '.join(groups) or '-'} | "
            f"{_names(component.creates)} |"
        )
    notes = [f"- **{component.name}**: {component.note}." for component in access if component.note]
    return "\n".join([*lines, "", *notes, "", "```bash", *_commands(access), "```", "", *_leaks(access)])


def _names(names: Iterable[str]) -> str:
    shown = ", ".join(f"`{name}`" for name in dict.fromkeys(names))
    return shown or "-"


def _commands(access: tuple[ComponentAccess, ...]) -> list[str]:
    """One `kafka-acls.sh` command per component and operation, every resource literal."""
    lines: list[str] = []
    for component in access:
        grants = [
            ("Read", component.reads, component.groups),
            ("Write", component.writes, ()),
            ("Describe", component.watches, component.watched_groups),
        ]
        lines.append(f"# {component.name} ({component.command})")
        for operation, topics, groups in grants:
            if not topics and not groups:
                continue
            resources = [*(f"--topic {topic}" for topic in dict.fromkeys(topics)), *(f"--group {g}" for g in groups)]
            lines += [
                f'kafka-acls.sh --bootstrap-server "$KAFKA" --add --allow-principal {component.principal} \\',
                f"    --resource-pattern-type literal --operation {operation} \\",
                f"    {' '.join(resources)}",
            ]
    return lines


def _leaks(access: tuple[ComponentAccess, ...]) -> list[str]:
    lines = []
    for name, topics in prefixed_grant_leaks(access).items():
        for topic, extra in topics.items():
            lines.append(
                f"- {name}: a prefixed Write ACL on `{topic}` would also let it write {_names(extra)}, which it "
                "never writes."
            )
    return lines
