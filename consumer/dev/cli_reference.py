"""The command-line reference, generated from the argument parsers when the docs site is built: per command its
usage line, its description, a table of its arguments and its epilog (the exit codes); a command with subcommands
lists them and then documents each one that takes arguments of its own."""

from __future__ import annotations

import argparse

__all__ = ["cli_reference", "subcommands"]

_WIDTH = 100  # usage lines wrap here whatever the terminal of the build


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands by name, in the order they were added."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    helps: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps.update({choice.dest: choice.help or "" for choice in action._choices_actions})
    return helps


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _name(action: argparse.Action) -> str:
    """As the usage line spells it: `--tenant TENANT`, `--priority {interactive,bulk}`, `--wait`, `request_id`."""
    if isinstance(action.metavar, str):
        metavar = action.metavar
    elif action.choices is not None:
        metavar = "{" + ",".join(str(choice) for choice in action.choices) + "}"
    else:
        metavar = action.dest.upper() if action.option_strings else action.dest
    if not action.option_strings:
        return metavar
    return ", ".join(f"{option} {metavar}" if action.nargs != 0 else option for option in action.option_strings)


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = _name(action)
        default = action.default
        shown_default = "" if default in (None, False, [], argparse.SUPPRESS) else f"`{default}`"
        required = "yes" if action.required or not action.option_strings else ""
        rows.append(f"| `{_cell(name)}` | {required} | {shown_default} | {_cell(action.help or '')} |")
    if not rows:
        return ["No arguments: configured by environment variables (see the configuration reference)."]
    return ["| Argument | Required | Default | Meaning |", "|---|---|---|---|", *rows]


def cli_reference(parser: argparse.ArgumentParser, *, heading_level: int = 3) -> str:
    """Markdown for `parser` and, below it, each of its subcommands that takes arguments of its own."""
    parts = [f"{'#' * heading_level} `{parser.prog}`", f"```text\n{_usage(parser)}\n```"]
    if parser.description:
        parts.append(_cell(parser.description))
    children = subcommands(parser)
    own = [a for a in parser._actions if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]
    if own or not children:
        parts.append("\n".join(_arguments(parser)))
    if parser.epilog:
        parts.append(_cell(parser.epilog))
    if children:
        helps = _helps(parser)
        rows = [f"| `{name}` | {_cell(helps.get(name, ''))} |" for name in children]
        parts.append("\n".join(["| Command | What it does |", "|---|---|", *rows]))
    for child in children.values():
        takes_arguments = any(not isinstance(action, argparse._HelpAction) for action in child._actions)
        if takes_arguments:
            parts.append(cli_reference(child, heading_level=heading_level + 1))
    return "\n\n".join(parts)
