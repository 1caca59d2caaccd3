"""Cancel one request from the command line: `vidgen cancel REQUEST_ID --tenant T`.

Publishes a `VideoControl` (`action: cancel`) to the control topic, keyed by the request id. Workers answer the
request `failed` with `error.code: cancelled` if it has not finished rendering (`vidgen watch REQUEST_ID` shows it);
a cancel for a request of another tenant is ignored. Connection settings come from the worker's `VIDGEN_*`
variables. Prints the request id. Exit codes as `vidgen submit`: 0 published, 64 bad arguments, 69 broker
unavailable, 78 bad configuration, each failure answered in one line that names the fix.
"""

from __future__ import annotations

from consumer.core.clock import utc_now
from consumer.kafka.clients import ensure_topics, start_producer
from consumer.settings import Settings
from producer_examples.command_line import EXIT_CODES, EXIT_COMPLETED, StrictArgumentParser, run_command
from schemas.events import VideoControl

__all__ = ["cancel_main", "cancel_parser"]


def cancel_parser(prog: str = "vidgen cancel") -> StrictArgumentParser:
    """`vidgen cancel`'s arguments (the CLI reference is generated from them)."""
    parser = StrictArgumentParser(
        prog=prog,
        description="Cancel one request (a command on the control topic).",
        epilog=f"Exit codes: 0 published, {EXIT_CODES}.",
    )
    parser.add_argument("request_id", metavar="REQUEST_ID", help="the id `vidgen submit` printed")
    parser.add_argument("--tenant", required=True, help="the request's tenant id; another tenant's cancel is ignored")
    return parser


def cancel_main(argv: list[str] | None = None, *, settings: Settings | None = None, prog: str = "vidgen cancel") -> int:
    def parse() -> VideoControl:
        args = cancel_parser(prog).parse_args(argv)
        return VideoControl(action="cancel", request_id=args.request_id, tenant_id=args.tenant, requested_at=utc_now())

    options = {"request_id": "REQUEST_ID", "tenant_id": "--tenant"}
    return run_command(prog, parse, _publish, settings=settings, failing="cannot publish", options=options)


async def _publish(command: VideoControl, settings: Settings) -> int:
    if settings.create_topics:
        await ensure_topics(settings, [settings.control_topic])
    producer = await start_producer(settings)
    try:
        await producer.send_and_wait(
            settings.control_topic,
            key=command.request_id.encode("utf-8"),
            value=command.model_dump_json().encode("utf-8"),
        )
    finally:
        await producer.stop()
    print(command.request_id, flush=True)
    return EXIT_COMPLETED
