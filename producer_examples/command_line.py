"""What the example command lines (`vidgen submit`, `watch`, `cancel`) share: their exit codes, an argument parser
that raises `UsageError` instead of exiting, and one way to parse, load the settings and run, so each command
answers bad arguments, bad configuration and unreachable services with one line each (naming the option or the
variable that fixes it) and its own exit code, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, NoReturn, TypeVar

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumer.errors import UsageError, VidgenError
from consumer.settings import ConfigurationError, Settings, describe_config_error
from consumer.settings.field_errors import field_errors
from consumer.start_failures import explain

__all__ = [
    "EXIT_CODES",
    "EXIT_COMPLETED",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "StrictArgumentParser",
    "describe_invalid",
    "run_command",
]

EXIT_COMPLETED, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2
EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_CONFIG = 64, 69, 78
EXIT_CODES = "64 bad arguments, 69 Kafka or S3 unavailable (the line names the fix), 78 bad configuration"
"""The exit codes every client command shares, for the end of its help (the CLI reference shows it)."""

Parsed = TypeVar("Parsed")


class StrictArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def describe_invalid(error: ValidationError, options: Mapping[str, str]) -> str:
    """A contract's refusal of what the arguments describe, one indented line per field, named as the option that
    sets it (`--frames`, not `num_frames`); no input, no pydantic links."""
    return "\n".join(f"  {line}" for line in field_errors(error, lambda name: options.get(name, name)))


def run_command(
    prog: str,
    parse: Callable[[], Parsed],
    work: Callable[[Parsed, Settings], Coroutine[Any, Any, int]],
    *,
    settings: Settings | None,
    failing: str,
    options: Mapping[str, str] | None = None,
) -> int:
    """Parse the command line (`parse()`, which may also build the event it describes), build the settings (unless
    given), then run `work` with both. Bad arguments: one line, or one per field the contract refuses (named by
    `options`: field -> option), exit 64; bad configuration: one line per variable, exit 78; Kafka, S3 or the network
    failing: `<prog>: <failing>: <why and the fix>`, exit 69. `work` closes its own clients, however it ends."""
    try:
        parsed = parse()
    except UsageError as exc:
        _say(prog, str(exc))
        return EXIT_USAGE
    except ValidationError as exc:
        _say(prog, f"invalid arguments:\n{describe_invalid(exc, options or {})}")
        return EXIT_USAGE
    try:
        settings = settings or Settings()
    except ConfigurationError as exc:
        _say(prog, f"invalid configuration:\n{describe_config_error(exc, Settings)}")
        return EXIT_CONFIG
    try:
        return asyncio.run(work(parsed, settings))
    except UsageError as exc:
        _say(prog, str(exc))
        return EXIT_USAGE
    except (KafkaError, VidgenError, OSError) as exc:
        _say(prog, f"{failing}: {explain(exc, bootstrap_servers=settings.kafka_bootstrap_servers)}")
        return EXIT_UNAVAILABLE


def _say(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr)
