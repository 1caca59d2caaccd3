"""Keeps the documentation's Kafka ACL table generated from the code's own topic list
(`consumer.kafka.topic_access`): who reads and writes which topic, the literal `kafka-acls.sh` commands that grant
exactly that, and what a prefixed ACL would grant beyond it. `make docs` rewrites the text between the markers;
tests check it is current.

    python -m consumer.dev.acl_docs [FILE]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from consumer.kafka.topic_access import ComponentAccess, prefixed_grant_leaks, topic_access
from consumer.settings import Settings
from producer_examples.notifier_settings import NotifierSettings

__all__ = ["ACLS_END", "ACLS_START", "DEFAULT_PATH", "acl_markdown", "default_access", "update_file"]

ACLS_START = "<!-- topic-acls:start -->"
ACLS_END = "<!-- topic-acls:end -->"
DEFAULT_PATH = Path("docs/_pending/template-acl.md")


def default_access() -> tuple[ComponentAccess, ...]:
    """The access of every component with every setting at its default, whatever this process's environment."""
    notifier = NotifierSettings.model_fields
    return topic_access(
        Settings.model_construct(),
        notifier_group=notifier["group"].default,
        notifier_dlq_topic=notifier["dlq_topic"].default,
    )


def acl_markdown(access: tuple[ComponentAccess, ...]) -> str:
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


def update_file(path: Path, access: tuple[ComponentAccess, ...] | None = None) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(ACLS_START) + len(ACLS_START), text.index(ACLS_END)
    table = acl_markdown(access or default_access())
    path.write_text(f"{text[:start]}\n{table}\n{text[end:]}", encoding="utf-8")


if __name__ == "__main__":
    update_file(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH)
