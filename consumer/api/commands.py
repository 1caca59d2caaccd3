"""`vidgen api` (serve the job API) and `vidgen api-key create --tenant T` (add an API key)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from consumer.api.api_settings import ApiSettings, KeysFileSettings
from consumer.api.auth.api_keys import create_key
from consumer.errors import VidgenError
from consumer.settings import ConfigurationError, Settings, describe_config_error
from consumer.start_failures import Listener, check_port, explain, taken_listener
from consumer.telemetry.logs import configure_logging
from consumer.telemetry.otlp import tracer_provider_from_env

__all__ = ["api_key_main", "api_key_parser", "serve_main", "serve_parser"]

log = logging.getLogger(__name__)


def _config_error(prog: str, *problems: tuple[ValidationError | SettingsError, type[BaseSettings]]) -> int:
    described = "\n".join(describe_config_error(exc, model) for exc, model in problems)
    print(f"{prog}: invalid configuration:\n{described}", file=sys.stderr)  # noqa: T201 - CLI
    return 2


def serve_parser(prog: str = "vidgen api") -> argparse.ArgumentParser:
    """`vidgen api`'s arguments: none but `--help` (the CLI reference is generated from them)."""
    return argparse.ArgumentParser(
        prog=prog,
        description="Serve the job API (configured by VIDGEN_* variables).",
        epilog="Exit codes: 0 a clean stop after SIGTERM or SIGINT; 1 Kafka, S3 or the view failed, or a port (the "
        "API's or the operator port) is taken (one line naming the fix); 2 bad configuration (one line per "
        "variable).",
    )


def api_key_parser(prog: str = "vidgen api-key") -> argparse.ArgumentParser:
    """`vidgen api-key`'s arguments (the CLI reference is generated from them)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Manage API keys of the job API.",
        epilog="Exit codes: 0 key added; 2 bad arguments or configuration; 73 the keys file cannot be written.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="add a key for a tenant and print it (once)")
    create.add_argument("--tenant", required=True, help="the tenant the key speaks for")
    create.add_argument("--keys-file", type=Path, help="default: VIDGEN_API_KEYS_FILE")
    return parser


def serve_main(argv: list[str], *, prog: str = "vidgen api") -> int:
    """Serve until SIGTERM or SIGINT. Exit 0 after a clean stop, 1 when Kafka, S3 or the view fail or a port (the
    API's, the operator port) is taken (one line naming the setting), 2 on bad configuration (one line per
    variable)."""
    serve_parser(prog).parse_args(argv)
    problems: list[tuple[ValidationError | SettingsError, type[BaseSettings]]] = []
    try:
        api = ApiSettings()
    except ConfigurationError as exc:
        problems.append((exc, ApiSettings))
    try:
        settings = Settings()
    except ConfigurationError as exc:
        problems.append((exc, Settings))
    if problems:
        return _config_error(prog, *problems)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    listeners = (
        Listener(api.host, api.port, "set VIDGEN_API_PORT"),
        Listener(api.host, api.operator_port, "set VIDGEN_API_OPERATOR_PORT"),  # probes and metrics
    )
    for listener in listeners:
        try:
            check_port(listener)  # before Kafka, S3 and the view: a taken port is answered within a second
        except OSError as exc:
            log.critical("job API cannot start: %s", explain(exc, listener=listener))
            return 1
    provider = tracer_provider_from_env(os.environ, default_service_name="vidgen-api")
    tracer = provider.get_tracer("vidgen.api") if provider is not None else None
    from consumer.api.wiring import serve  # aiohttp app, Kafka and S3 clients only when serving

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await serve(api, settings, stop, tracer=tracer)

    try:
        return asyncio.run(run())
    except (KafkaError, VidgenError, OSError) as exc:
        why = explain(exc, bootstrap_servers=settings.kafka_bootstrap_servers, listener=taken_listener(exc, listeners))
        log.critical("job API stopped: %s", why)
        return 1
    finally:
        if provider is not None:
            provider.shutdown()


def api_key_main(argv: list[str], *, prog: str = "vidgen api-key") -> int:
    """`create --tenant T`: append the new key's hash to VIDGEN_API_KEYS_FILE (or --keys-file) and print the key,
    alone on the last line."""
    parser = api_key_parser(prog)
    args = parser.parse_args(argv)
    try:
        configured = KeysFileSettings().keys_file
    except ConfigurationError as exc:
        return _config_error(prog, (exc, KeysFileSettings))
    path = args.keys_file or (Path(configured) if configured else None)
    if path is None:
        parser.error("set VIDGEN_API_KEYS_FILE or pass --keys-file")
    try:
        key = create_key(path, args.tenant)
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"{prog}: cannot write {path}: {exc.strerror}", file=sys.stderr)  # noqa: T201 - CLI
        return 73  # EX_CANTCREAT
    print(f"API key for tenant {args.tenant} added to {path} (only its SHA-256 is stored).")  # noqa: T201 - CLI
    print("Keep it now; it cannot be shown again:")  # noqa: T201 - CLI
    print(key)  # noqa: T201 - CLI
    return 0
