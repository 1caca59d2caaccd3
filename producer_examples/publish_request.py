"""Publish one video request from the command line; optionally wait for its result.

    python -m producer_examples.publish_request --tenant shop-1 --prompt "a red sneaker" --image shoe.png --wait

Connection settings come from the worker's `VIDGEN_*` variables. Prints the request id, then (with --wait) the
result event as JSON. Exit codes: 0 published / completed, 1 failed or rejected, 2 no result before --timeout,
64 bad arguments, 69 broker or S3 unavailable, 78 bad configuration; each failure is one line on stderr (one per
field for a request the contract refuses) naming the option or the variable that fixes it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import mimetypes
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from consumer.core.clock import utc_now
from consumer.core.keys import upload_key
from consumer.errors import UsageError
from consumer.kafka.clients import ensure_topics, start_producer
from consumer.object_store import ObjectStore, open_s3_client
from consumer.settings import Settings
from producer_examples.command_line import EXIT_CODES, EXIT_COMPLETED, StrictArgumentParser, run_command
from producer_examples.publishing import RequestPublisher
from producer_examples.tracer_setup import make_tracer_provider
from producer_examples.waiting import ResultWatcher, report_result
from schemas.events import VideoRequest

__all__ = ["OPTIONS", "build_request", "main", "submit_parser"]

OPTIONS = {
    "request_id": "--request-id",
    "tenant_id": "--tenant",
    "prompt": "--prompt",
    "negative_prompt": "--negative-prompt",
    "image_url": "--image-url",
    "width": "--width",
    "height": "--height",
    "num_frames": "--frames",
    "num_inference_steps": "--steps",
    "guidance_scale": "--guidance",
    "fps": "--fps",
    "seed": "--seed",
    "priority": "--priority",
    "metadata": "--metadata",
    "deadline": "--deadline-in",
}
"""The option that sets each request field: what an error about the field names."""


def submit_parser(prog: str = "vidgen submit") -> argparse.ArgumentParser:
    """`vidgen submit`'s arguments (the CLI reference is generated from them)."""
    parser = StrictArgumentParser(
        prog=prog,
        description="Publish one video request to Kafka (VIDGEN_* settings).",
        epilog="Exit codes: 0 published (with --wait: completed), 1 failed or rejected, 2 no result before --timeout, "
        f"{EXIT_CODES}.",
    )
    parser.add_argument("--prompt", required=True, help="what the video shows")
    parser.add_argument("--negative-prompt", help="what the video should avoid")
    image = parser.add_mutually_exclusive_group()
    image.add_argument("--image", type=Path, help="local start image, uploaded to the tenant's folder under uploads/")
    image.add_argument("--image-url", help="start image already reachable: s3://bucket/key or https://...")
    parser.add_argument("--tenant", default="cli", help="tenant id (default: cli)")
    parser.add_argument("--request-id", help="idempotency key (default: generated)")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--frames", type=int, default=25, help="number of frames")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--priority",
        choices=["interactive", "bulk"],
        help="bulk: a backfill nobody waits for, published to the bulk topic (default: interactive)",
    )
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    parser.add_argument(
        "--deadline-in",
        type=float,
        metavar="SECONDS",
        help="the request fails (expired) unless its render starts within this many seconds",
    )
    parser.add_argument("--wait", action="store_true", help="wait for the result and print it")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits (default 600)")
    parser.add_argument("--progress-topic", default="video.progress", help="read progress here if it exists")
    parser.add_argument("--otlp-endpoint", help="export the trace to this OTLP/HTTP collector")
    return parser


def build_request(args: argparse.Namespace, *, image_url: str | None) -> VideoRequest:
    """The request the arguments describe; raises ValidationError with the contract's own messages."""
    metadata: dict[str, str] = {}
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--metadata {item!r} is not KEY=VALUE")
        metadata[key] = value
    fields: dict[str, Any] = {
        "request_id": args.request_id or f"cli-{uuid.uuid4().hex[:16]}",
        "tenant_id": args.tenant,
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "image_url": image_url,
        "width": args.width,
        "height": args.height,
        "num_frames": args.frames,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "fps": args.fps,
        "seed": args.seed,
        "priority": args.priority,
        "metadata": metadata,
    }
    if args.deadline_in is not None:
        if args.deadline_in <= 0:
            raise UsageError("--deadline-in must be more than 0 seconds")
        fields["deadline"] = utc_now() + timedelta(seconds=args.deadline_in)
    return VideoRequest.model_validate(fields)


def main(
    argv: list[str] | None = None,
    *,
    settings: Settings | None = None,
    tracer_provider: TracerProvider | None = None,
    prog: str = "publish_request",
) -> int:
    """Entry point for `python -m producer_examples.publish_request` and `vidgen submit`. Configures no
    logging (the caller's job) and installs no global tracer provider."""

    async def submit(args: argparse.Namespace, settings: Settings) -> int:
        provider = tracer_provider or make_tracer_provider("vidgen-submit", args.otlp_endpoint)
        try:
            return await _submit(args, settings, provider.get_tracer(__name__), prog=prog)
        finally:
            if tracer_provider is None:
                await asyncio.to_thread(provider.shutdown)  # flushes the trace to --otlp-endpoint

    parse = functools.partial(_parse_args, prog, argv)
    return run_command(prog, parse, submit, settings=settings, failing="cannot publish", options=OPTIONS)


def _parse_args(prog: str, argv: list[str] | None) -> argparse.Namespace:
    args = submit_parser(prog).parse_args(argv)
    if args.image is not None and not args.image.is_file():
        raise UsageError(f"--image {args.image} is not a file")
    build_request(args, image_url=None if args.image else args.image_url)  # fails before any I/O
    return args


async def _submit(args: argparse.Namespace, settings: Settings, tracer: Tracer, *, prog: str) -> int:
    image_url = args.image_url
    if args.image is not None:
        image_url = await _upload(args.image, args.tenant, settings)
    request = build_request(args, image_url=image_url)
    if settings.create_topics:
        await ensure_topics(settings, [settings.requests_topic, settings.bulk_topic, settings.results_topic])
    watcher = ResultWatcher(settings, request.request_id, progress_topic=args.progress_topic) if args.wait else None
    try:
        if watcher is not None:
            await watcher.start()  # positioned before publishing, so the result cannot slip past
        producer = await start_producer(settings)
        try:
            await RequestPublisher(producer, settings=settings, tracer=tracer).publish(request)
        finally:
            await producer.stop()
        print(request.request_id, flush=True)
        if watcher is None:
            return EXIT_COMPLETED
        return await report_result(watcher, request.request_id, timeout_s=args.timeout, prog=prog)
    finally:
        if watcher is not None:
            await watcher.stop()


async def _upload(path: Path, tenant_id: str, settings: Settings) -> str:
    """Into the tenant's own upload folder: the only part of the bucket the worker reads for this tenant."""
    data = await asyncio.to_thread(path.read_bytes)
    if len(data) > settings.image_max_bytes:
        raise UsageError(f"--image is {len(data)} bytes; the worker accepts at most {settings.image_max_bytes}")
    key = upload_key(data, path.name, prefix=settings.s3_key_prefix, tenant_id=tenant_id)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    async with open_s3_client(settings) as s3:
        store = ObjectStore(s3, bucket=settings.s3_bucket, presign_ttl_s=settings.presign_ttl_s)
        if await store.head(key) is None:
            await store.put(key, data, content_type=content_type, metadata={})
        return store.uri(key)


if __name__ == "__main__":
    from consumer.telemetry.logs import configure_logging

    configure_logging(fmt="text", level="WARNING")
    sys.exit(main())
