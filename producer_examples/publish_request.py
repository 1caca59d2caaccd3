"""Publish one video request from the command line; optionally wait for its result.

    python -m producer_examples.publish_request --tenant shop-1 --prompt "a red sneaker" --image shoe.png --wait

Connection settings come from the worker's `VIDGEN_*` variables. Prints the request id, then (with --wait) the
result event as JSON. Exit codes: 0 published / completed, 1 failed or rejected, 2 no result before --timeout,
64 bad arguments, 69 broker or S3 unavailable, 78 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from aiokafka.errors import KafkaError
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from consumer.core.clock import utc_now
from consumer.core.keys import upload_key
from consumer.errors import UsageError, VidgenError
from consumer.kafka.clients import ensure_topics, make_producer
from consumer.object_store import ObjectStore, open_s3_client
from consumer.settings import ConfigurationError, Settings, describe_config_error
from producer_examples.command_line import StrictArgumentParser
from producer_examples.publishing import RequestPublisher
from producer_examples.tracer_setup import make_tracer_provider
from producer_examples.waiting import ResultWatcher, render_progress
from schemas.events import VideoRequest

__all__ = [
    "EXIT_COMPLETED",
    "EXIT_FAILED",
    "EXIT_TIMEOUT",
    "build_request",
    "main",
    "submit_parser",
    "watch_main",
    "watch_parser",
]

EXIT_COMPLETED, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2
EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_CONFIG = 64, 69, 78


def submit_parser(prog: str = "vidgen submit") -> argparse.ArgumentParser:
    """`vidgen submit`'s arguments (the CLI reference is generated from them)."""
    parser = StrictArgumentParser(prog=prog, description="Publish one video request to Kafka (VIDGEN_* settings).")
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
    try:
        args = _parse_args(prog, argv)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"{prog}: invalid request:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = settings or Settings()
    except ConfigurationError as exc:
        print(f"{prog}: invalid configuration:\n{describe_config_error(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    provider = tracer_provider or make_tracer_provider("vidgen-submit", args.otlp_endpoint)
    try:
        return asyncio.run(_submit(args, settings, provider.get_tracer(__name__), prog=prog))
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KafkaError, VidgenError, OSError) as exc:
        print(f"{prog}: cannot publish: {exc!r}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        if tracer_provider is None:
            provider.shutdown()


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
        producer = make_producer(settings)
        await producer.start()
        try:
            await RequestPublisher(producer, settings=settings, tracer=tracer).publish(request)
        finally:
            await producer.stop()
        print(request.request_id, flush=True)
        if watcher is None:
            return EXIT_COMPLETED
        return await _report(watcher, request.request_id, timeout_s=args.timeout, prog=prog)
    finally:
        if watcher is not None:
            await watcher.stop()


async def _report(watcher: ResultWatcher, request_id: str, *, timeout_s: float, prog: str) -> int:
    """Wait for the result with a progress bar on stderr, print it, and answer with its exit code."""
    bar = _Bar(sys.stderr)
    result = await watcher.wait(timeout_s=timeout_s, on_tick=bar.draw)
    bar.close()
    if result is None:
        print(f"{prog}: no result for {request_id} within {timeout_s:g}s", file=sys.stderr)
        return EXIT_TIMEOUT
    print(result.model_dump_json(indent=2))
    return EXIT_COMPLETED if result.status == "completed" else EXIT_FAILED


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


def watch_parser(prog: str = "vidgen watch") -> argparse.ArgumentParser:
    """`vidgen watch`'s arguments (the CLI reference is generated from them)."""
    parser = argparse.ArgumentParser(prog=prog, description="Follow one request until its result arrives.")
    parser.add_argument("request_id")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the result")
    return parser


def watch_main(
    argv: list[str] | None = None,
    *,
    settings: Settings | None = None,
    prog: str = "vidgen watch",
    on_positioned: Callable[[], None] | None = None,
) -> int:
    """`vidgen watch REQUEST_ID`: a progress bar from `video.progress`, then the result. Same exit codes.
    `on_positioned` is told once the watcher reads from the topics' ends: what is published after that is seen."""
    args = watch_parser(prog).parse_args(argv)
    try:
        settings = settings or Settings()
    except ConfigurationError as exc:
        print(f"{prog}: invalid configuration:\n{describe_config_error(exc)}", file=sys.stderr)
        return EXIT_CONFIG

    async def follow() -> int:
        watcher = ResultWatcher(settings, args.request_id, progress_topic=settings.progress_topic)
        await watcher.start()
        if on_positioned is not None:
            on_positioned()
        try:
            return await _report(watcher, args.request_id, timeout_s=args.timeout, prog=prog)
        finally:
            await watcher.stop()

    try:
        return asyncio.run(follow())
    except (KafkaError, OSError) as exc:
        print(f"{prog}: cannot follow: {exc!r}", file=sys.stderr)
        return EXIT_UNAVAILABLE


class _Bar:
    """Redraws one line on a terminal; stays silent when stderr is a file or a pipe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._started = time.monotonic()
        self._ticks = 0

    def draw(self, step: int | None, total: int | None) -> None:
        if self._live:
            self._ticks += 1
            line = render_progress(step, total, elapsed_s=time.monotonic() - self._started, tick=self._ticks)
            self._stream.write("\r" + line)
            self._stream.flush()

    def close(self) -> None:
        if self._live:
            self._stream.write("\n")
            self._stream.flush()


if __name__ == "__main__":
    from consumer.telemetry.logs import configure_logging

    configure_logging(fmt="text", level="WARNING")
    sys.exit(main())
