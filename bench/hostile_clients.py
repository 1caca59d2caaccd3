"""What the hostile-tenant benchmark (`bench.hostile_api`) and its tests drive the job API with: the API as a process
of its own (from this checkout, or another one for before-and-after figures), its resident memory, raw connections
that stall in the middle of a body, a watch on the probes, and taps (`consumer.dev.embedded.TcpProxy`) that count
the requests the API makes to Kafka and S3."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from bench.infra import REPO_ROOT, end_group, spawn_api

__all__ = [
    "ApiUnderTest",
    "KafkaRequestCount",
    "ProbeWatch",
    "RssSampler",
    "S3RequestCount",
    "Stalled",
    "api_process",
    "stalled_upload",
]

_MIB = 1 << 20
_CHUNK = bytes(256 * 1024)


@dataclass
class ApiUnderTest:
    process: subprocess.Popen[bytes]
    url: str  # the API (tenants)
    probe_url: str  # where /healthz, /readyz and /metrics answer: the operator port (the API's own, before it had one)
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def rss_mib(self) -> float:
        return float(psutil.Process(self.process.pid).memory_info().rss) / _MIB

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@contextlib.asynccontextmanager
async def api_process(
    env: dict[str, str], *, port: int, operator_port: int, log_path: Path, checkout: Path = REPO_ROOT
) -> AsyncIterator[ApiUnderTest]:
    """`python -m consumer api` of `checkout` (with its own `.venv` when it has one), until ready."""
    process = await asyncio.to_thread(_spawn, env, checkout, log_path)
    try:
        probe_url = await _ready(process, port=port, operator_port=operator_port, log_path=log_path)
        yield ApiUnderTest(process, f"http://127.0.0.1:{port}", probe_url, log_path)
    finally:
        end_group(process, grace_s=10)


def _spawn(env: dict[str, str], checkout: Path, log_path: Path) -> subprocess.Popen[bytes]:
    venv_python = checkout / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    return spawn_api(env, log_path, checkout=checkout, python=python)


async def _ready(process: subprocess.Popen[bytes], *, port: int, operator_port: int, log_path: Path) -> str:
    """The probe URL once /readyz answers 200 there (the operator port, or the API's own port before it had one)."""
    candidates = [f"http://127.0.0.1:{operator_port}", f"http://127.0.0.1:{port}"]
    async with aiohttp.ClientSession() as http, asyncio.timeout(120):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the API exited; its log: {log_path}")
            for url in candidates:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/readyz") as response:
                        if response.status == 200:
                            return url
            await asyncio.sleep(0.1)  # another process: its probe is all there is to watch


class RssSampler:
    """The highest resident memory of a process, sampled every `every_s` in a thread while the block runs."""

    def __init__(self, pid: int, *, every_s: float = 0.005) -> None:
        self._process = psutil.Process(pid)
        self._every_s = every_s
        self._stop = threading.Event()
        self.peak_mib = 0.0

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak_mib = max(self.peak_mib, self._process.memory_info().rss / _MIB)
            self._stop.wait(self._every_s)

    @contextlib.contextmanager
    def sampling(self) -> Iterator[RssSampler]:
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


class ProbeWatch:
    """GET `url` every `every_s` while the block runs: how many answers of each status (or `refused`, `timeout`)."""

    def __init__(self, url: str, *, every_s: float = 0.2, timeout_s: float = 2.0) -> None:
        self._url = url
        self._every_s = every_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.answers: Counter[str] = Counter()

    async def _watch(self) -> None:
        async with aiohttp.ClientSession(timeout=self._timeout) as http:
            while True:
                try:
                    async with http.get(self._url) as response:
                        self.answers[str(response.status)] += 1
                except TimeoutError:
                    self.answers["timeout"] += 1
                except aiohttp.ClientError:
                    self.answers["refused"] += 1
                await asyncio.sleep(self._every_s)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[ProbeWatch]:
        task = asyncio.create_task(self._watch())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class Stalled:
    status: int | None  # the answer's status; None when none came in time
    answered_s: float | None  # seconds from the request's headers to the answer
    sent: int  # body bytes the server took before the client stopped (or was cut off)
    writer: asyncio.StreamWriter


async def stalled_upload(
    port: int,
    *,
    declared: int,
    send: int,
    headers: dict[str, str],
    answer_timeout_s: float,
    content_type: str = "multipart/form-data; boundary=stalling",
) -> Stalled:
    """`POST /v1/videos` announcing `declared` body bytes, sending `send` of them, then nothing more: the connection
    stays open (close `writer`). The answer is read while sending, as a careful client does."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [
        "POST /v1/videos HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {content_type}",
        f"Content-Length: {declared}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    started = time.monotonic()
    answer = asyncio.create_task(_status(reader, started))
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < send:
            piece = min(len(_CHUNK), send - sent)
            writer.write(_CHUNK[:piece])
            await writer.drain()
            sent += piece
    try:
        status, answered_s = await asyncio.wait_for(answer, answer_timeout_s)
    except TimeoutError:
        status, answered_s = None, None
    return Stalled(status, answered_s, sent, writer)


async def _status(reader: asyncio.StreamReader, started: float) -> tuple[int | None, float | None]:
    with contextlib.suppress(ConnectionError, ValueError, IndexError):
        line = await reader.readline()
        return int(line.split()[1]), time.monotonic() - started
    return None, None


class KafkaRequestCount:
    """A `TcpProxy` tap: counts the requests of one Kafka API (3: Metadata) that clients send through the proxy,
    from each request's size and API key (the Kafka wire format: int32 size, int16 API key, ...)."""

    def __init__(self, api_key: int) -> None:
        self._api_key = api_key
        self.count = 0

    def __call__(self) -> Callable[[bytes], None]:
        header = bytearray()
        skip = 0

        def observe(chunk: bytes) -> None:
            nonlocal skip
            view = memoryview(chunk)
            while view:
                if skip:
                    taken = min(skip, len(view))
                    skip -= taken
                    view = view[taken:]
                    continue
                wanted = 6 - len(header)
                header.extend(view[:wanted])
                view = view[wanted:]
                if len(header) == 6:
                    size = int.from_bytes(header[:4], "big")
                    self.count += int.from_bytes(header[4:6], "big", signed=True) == self._api_key
                    skip = size - 2
                    header.clear()

        return observe


class S3RequestCount:
    """A `TcpProxy` tap: counts HTTP requests that start with `request_line` (e.g. `HEAD /bucket `)."""

    def __init__(self, request_line: bytes) -> None:
        self._pattern = request_line
        self.count = 0

    def __call__(self) -> Callable[[bytes], None]:
        tail = b""

        def observe(chunk: bytes) -> None:
            nonlocal tail
            seen = tail + chunk
            self.count += seen.count(self._pattern)
            tail = seen[-(len(self._pattern) - 1) :]

        return observe
