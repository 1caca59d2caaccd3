"""Cancel one request from the command line: `vidgen cancel REQUEST_ID --tenant T`.

Publishes a `VideoControl` (`action: cancel`) to the control topic, keyed by the request id. Workers answer the
request `failed` with `error.code: cancelled` if it has not finished rendering (`vidgen watch REQUEST_ID` shows it);
a cancel for a request of another tenant is ignored. Connection settings come from the worker's `VIDGEN_*`
variables. Prints the request id. Exit codes as `vidgen submit`: 0 published, 64 bad arguments, 69 broker
unavailable, 78 bad configuration.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumer.core.clock import utc_now
from consumer.errors import UsageError, VidgenError
from consumer.kafka.clients import ensure_topics, make_producer
from consumer.settings import ConfigurationError, Settings, describe_config_error
from producer_examples.command_line import StrictArgumentParser
from producer_examples.publish_request import EXIT_COMPLETED, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_USAGE
from schemas.events import VideoControl

__all__ = ["cancel_main", "cancel_parser"]


def cancel_parser(prog: str = "vidgen cancel") -> StrictArgumentParser:
    """`vidgen cancel`'s arguments (the CLI reference is generated from them)."""
    parser = StrictArgumentParser(prog=prog, description="Cancel one request (a command on the control topic).")
    parser.add_argument("request_id")
    parser.add_argument("--tenant", required=True, help="the request's tenant id; another tenant's cancel is ignored")
    return parser


def cancel_main(argv: list[str] | None = None, *, settings: Settings | None = None, prog: str = "vidgen cancel") -> int:
    try:
        args = cancel_parser(prog).parse_args(argv)
        command = VideoControl(
            action="cancel", request_id=args.request_id, tenant_id=args.tenant, requested_at=utc_now()
        )
    except (UsageError, ValidationError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = settings or Settings()
    except ConfigurationError as exc:
        print(f"{prog}: invalid configuration:\n{describe_config_error(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        asyncio.run(_publish(command, settings))
    except (KafkaError, VidgenError, OSError) as exc:
        print(f"{prog}: cannot publish: {exc!r}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(command.request_id, flush=True)
    return EXIT_COMPLETED


async def _publish(command: VideoControl, settings: Settings) -> None:
    if settings.create_topics:
        await ensure_topics(settings, [settings.control_topic])
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.control_topic,
            key=command.request_id.encode("utf-8"),
            value=command.model_dump_json().encode("utf-8"),
        )
    finally:
        await producer.stop()
