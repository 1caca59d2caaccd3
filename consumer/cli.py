"""`vidgen` command line: `run` (the worker), `demo` (everything embedded, one video), `api` (the job API),
`api-key` (its keys), `webhook-keys` (the key of tenant webhook secrets), and the client commands `submit`, `watch`
and `cancel`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiokafka.errors import KafkaError

from consumer.errors import VidgenError
from consumer.settings import ConfigurationError, Settings, describe_config_error
from consumer.settings.pools import worker_settings
from consumer.start_failures import Listener, check_port, explain
from consumer.telemetry.logs import configure_logging

__all__ = ["build_parser", "main"]

log = logging.getLogger("consumer")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["submit"], ["watch"], ["cancel"]):
        # Client commands of the producer examples, with their own arguments and exit codes.
        from producer_examples.cancel_request import cancel_main
        from producer_examples.publish_request import main as submit_main
        from producer_examples.watch_request import watch_main

        configure_logging(fmt="text", level="WARNING")
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # each command answers its failures in one line
        clients: dict[str, Callable[..., int]] = {"submit": submit_main, "watch": watch_main, "cancel": cancel_main}
        return clients[argv[0]](argv[1:], prog=f"vidgen {argv[0]}")
    if argv[:1] in (["api"], ["api-key"], ["webhook-keys"]):
        from consumer.api.commands import api_key_main, serve_main  # the job API's own arguments and settings
        from consumer.webhooks.reseal import reseal_main

        services: dict[str, Callable[[list[str]], int]] = {
            "api": serve_main,
            "api-key": api_key_main,
            "webhook-keys": reseal_main,
        }
        return services[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)

    try:
        settings = Settings()
    except ConfigurationError as exc:
        print(f"vidgen: invalid configuration:\n{describe_config_error(exc, Settings)}", file=sys.stderr)  # noqa: T201
        return 2

    if args.command == "demo":
        return _demo(settings, args)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return _run_worker(settings, args.gpus)


def build_parser() -> argparse.ArgumentParser:
    """`vidgen`'s commands and their arguments (the CLI reference is generated from them). `submit`, `watch`,
    `cancel`, `api`, `api-key` and `webhook-keys` parse their own arguments."""
    parser = argparse.ArgumentParser(prog="vidgen", description="Kafka-driven EasyAnimate video worker.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run a worker in the consumer group (configured by VIDGEN_* variables)",
        epilog="Exit codes: 0 a clean stop after SIGTERM or SIGINT; 1 it cannot start (one line naming the fix: the "
        "port, the brokers, the idempotent producer, S3 credentials) or its model broke; 2 bad configuration (one "
        "line per variable), topic or group settings that contradict VIDGEN_MODEL, or a --gpus selection the node "
        "cannot run.",
    )
    run.add_argument(
        "--gpus",
        metavar="all|N|0,2,5",
        help="one worker process per GPU under a supervisor: every visible GPU, the first N, or these indexes (N CPU "
        "workers with VIDGEN_DEVICE=cpu); the node's /healthz, /readyz and /metrics stay on VIDGEN_HTTP_PORT",
    )
    demo = commands.add_parser(
        "demo",
        help="render one product video end to end with embedded services",
        epilog="Exit codes: 0 both videos saved (with --api: a clean stop after Ctrl-C); 1 a request failed or "
        "something could not start or stopped (one line naming the fix); 2 bad configuration.",
    )
    demo.add_argument("--output", type=Path, default=Path("demo-output"), help="where to save the files")
    demo.add_argument(
        "--api",
        action="store_true",
        help="instead: keep the services, a worker, a template worker and the job API with its web console running "
        "until Ctrl-C, printing the console's URL, an API key and the variables that attach other commands",
    )
    demo.add_argument("--port", type=int, default=8000, help="the job API's port with --api (0: any free port)")
    commands.add_parser("submit", help="publish one request (see `vidgen submit --help`)")
    commands.add_parser("watch", help="follow one request's progress until its result (REQUEST_ID)")
    commands.add_parser("cancel", help="cancel one request: `vidgen cancel REQUEST_ID --tenant T`")
    commands.add_parser("api", help="serve the job API (configured by VIDGEN_* and VIDGEN_API_* variables)")
    commands.add_parser("api-key", help="add an API key for a tenant: `vidgen api-key create --tenant T`")
    commands.add_parser("webhook-keys", help="re-encrypt webhook secrets under the newest key: `reseal`")
    return parser


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    # A terminal user wants readable lines and no INFO chatter next to the progress bar.
    configure_logging(
        fmt="text", level="WARNING" if "log_level" not in settings.model_fields_set else settings.log_level
    )
    if not args.api:
        from consumer.dev.demo import run_demo  # imports the embedded broker and S3 server only when asked

        return run_demo(settings, args.output)
    listener = Listener("127.0.0.1", args.port, "pass --port (0: any free port)")  # a demo answers this machine only
    try:
        check_port(listener)  # before the model, the broker and S3 load: a taken port is answered within a second
    except OSError as exc:
        print(f"vidgen demo --api: {explain(exc, listener=listener)}", file=sys.stderr)  # noqa: T201 - CLI
        return 1
    from consumer.dev.console_demo import run_console_demo

    return run_console_demo(settings, listener)


def _run_worker(settings: Settings, gpus: str | None) -> int:
    """`vidgen run`: one worker, or a node of them with `--gpus`. Topic and group settings that contradict the model
    stop it first (exit 2, one line naming them), before any child of `--gpus` starts: each would refuse alike. Exit 1
    when it cannot start, in one line."""
    try:
        settings = worker_settings(settings)
    except VidgenError as exc:  # pool_mismatch
        log.critical("worker cannot start: %s (%s)", exc.message, exc.code)
        return 2
    listener = Listener(settings.http_host, settings.http_port, "set VIDGEN_HTTP_PORT")
    try:
        check_port(listener)  # before the model and Kafka: a taken port is answered within a second
    except OSError as exc:
        log.critical("worker cannot start: %s", explain(exc, listener=listener))
        return 1
    return _run_node(settings, gpus) if gpus is not None else _run(settings, listener)


def _run(settings: Settings, listener: Listener) -> int:
    from consumer.telemetry.otlp import tracer_provider_from_env
    from consumer.worker.wiring import serve

    provider = tracer_provider_from_env(os.environ, default_service_name="vidgen-worker")
    tracer = provider.get_tracer("vidgen.worker") if provider is not None else None

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _request_stop, stop, signum)
        return await serve(settings, stop, tracer=tracer)

    try:
        return asyncio.run(runner())
    except (VidgenError, KafkaError, OSError) as exc:
        why = explain(exc, bootstrap_servers=settings.kafka_bootstrap_servers, listener=listener)
        log.critical("worker cannot start: %s", why)
        return 1
    finally:
        if provider is not None:
            provider.shutdown()  # flushes spans still in the batch


def _run_node(settings: Settings, gpus: str) -> int:
    """`vidgen run --gpus`: a supervisor and one worker process per GPU (the workers inherit this environment)."""
    from consumer.supervisor import RestartPolicy, SupervisorOptions, run_supervisor

    restarts = RestartPolicy(
        backoff_s=settings.supervisor_restart_backoff_s, startup_attempts=settings.supervisor_startup_attempts
    )
    options = SupervisorOptions(child_port_base=settings.supervisor_child_port_base, restarts=restarts)
    return run_supervisor(settings, gpus, environ=os.environ, options=options)


def _request_stop(stop: asyncio.Event, signum: int) -> None:
    log.info("%s received: draining", signal.Signals(signum).name)
    stop.set()
