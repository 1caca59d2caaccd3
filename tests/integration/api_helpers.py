"""Shared pieces of the job API's integration tests: an identity provider (keys the test generates, a JWKS served
over loopback HTTP, tokens signed with them), API keys, and the API itself, in-process or as `vidgen api`
subprocesses."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

from consumer.api.api_settings import ApiSettings
from consumer.api.auth.api_keys import create_key
from consumer.api.wiring import serve
from consumer.dev.embedded import free_port
from consumer.settings import Settings

ISSUER = "https://id.shop.test/"
AUDIENCE = "vidgen-api"
ID_KEY = "test-id-key-" + "x" * 32


class IdentityProvider:
    """Signing keys the test made, their JWKS on a loopback server, and tokens signed with them."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.published: list[dict[str, Any]] = [self._jwk(self.rsa, "rsa-1"), self._jwk(self.ec, "ec-1")]
        self.fetches = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    @staticmethod
    def _jwk(key: Any, kid: str) -> dict[str, Any]:
        algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
        return {**json.loads(algorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig"}

    async def start(self) -> None:
        async def jwks(_: web.Request) -> web.Response:
            self.fetches += 1
            return web.json_response({"keys": self.published})

        app = web.Application()
        app.router.add_get("/jwks.json", jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/jwks.json"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def token(
        self,
        tenant: str | None = "shop-1",
        *,
        kid: str = "rsa-1",
        algorithm: str = "RS256",
        key: Any = None,
        lifetime_s: float = 300,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + lifetime_s, **claims}
        if tenant is not None:
            payload["tenant_id"] = tenant
        signing_key = key if key is not None else (self.rsa if kid.startswith("rsa") else self.ec)
        return jwt.encode(
            {k: v for k, v in payload.items() if v is not None}, signing_key, algorithm=algorithm, headers={"kid": kid}
        )


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


class TenantSessions:
    """One API and an HTTP session per tenant, each sending its tenant's credential; `close` when done."""

    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.url = url
        self.sessions = {tenant: aiohttp.ClientSession(headers=bearer(key)) for tenant, key in keys.items()}

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()


def api_settings(tmp_path: Path, jwks_url: str | None, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "operator_port": 0,
        "state_path": str(tmp_path / f"view-{uuid.uuid4().hex[:6]}.sqlite3"),
        "id_key": ID_KEY,
        "keys_file": str(tmp_path / "api-keys"),
        "jwt_jwks_url": jwks_url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwks_min_refresh_s": 1.0,
        "rate_per_s": 1000.0,
        "burst": 1000,
        "tenant_max_queued": 100,  # a module's API collects one tenant's jobs queued over many tests (no worker)
        "sse_keepalive_s": 1.0,
        **overrides,
    }
    return ApiSettings(**values)


@dataclass
class RunningApi:
    url: str
    operator_url: str  # /healthz, /readyz, /metrics
    task: asyncio.Task[int]
    stop: asyncio.Event
    settings: ApiSettings

    async def shutdown(self) -> int:
        self.stop.set()
        return await asyncio.wait_for(self.task, 30)


@contextlib.asynccontextmanager
async def running_api(settings: Settings, api: ApiSettings, **serve_options: Any) -> AsyncIterator[RunningApi]:
    """The API in this process, until the block ends; waits for /readyz."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    port: asyncio.Future[int] = loop.create_future()
    operator_port: asyncio.Future[int] = loop.create_future()
    task = asyncio.create_task(
        serve(api, settings, stop, on_port=port.set_result, on_operator_port=operator_port.set_result, **serve_options)
    )
    done, _ = await asyncio.wait([port, task], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    urls = (f"http://127.0.0.1:{port.result()}", f"http://127.0.0.1:{operator_port.result()}")
    running = RunningApi(*urls, task, stop, api)
    try:
        await wait_ready(running.operator_url)
        yield running
    finally:
        if not task.done():
            await running.shutdown()


async def wait_ready(url: str, *, timeout_s: float = 60, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until GET /readyz (on the operator port `url`) answers 200."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the API exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)  # nothing to wait on across processes but the probe itself


@dataclass
class ApiProcess:
    """`python -m consumer api` with the given settings; ports and log of its own."""

    env: dict[str, str]
    log_path: Path
    port: int
    operator_port: int
    process: subprocess.Popen[bytes] | None = None
    url: str = field(init=False)
    operator_url: str = field(init=False)  # /healthz, /readyz, /metrics

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"
        self.operator_url = f"http://127.0.0.1:{self.operator_port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consumer", "api"], env=self.env, stdout=log, stderr=log, start_new_session=True
            )

    async def ready(self) -> None:
        await wait_ready(self.operator_url, process=self.process)

    def stop(self, *, kill: bool = False) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
        return self.process.wait(timeout=30)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def process_env(settings: Settings, api: ApiSettings, **overrides: Any) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VIDGEN_")}
    env.update(settings.model_copy(update={"log_format": "text"}).as_environment())
    env.update(api.as_environment())
    env.update({key: str(value) for key, value in overrides.items()})
    return env


@dataclass
class ApiStack:
    settings: Settings
    api: ApiSettings
    server: RunningApi
    keys: dict[str, str]  # tenant -> API key
    spans: InMemorySpanExporter

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def operator_url(self) -> str:
        return self.server.operator_url


def new_key(api: ApiSettings, tenant: str) -> str:
    assert api.keys_file is not None
    return create_key(Path(api.keys_file), tenant)


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def sse_messages(text: str) -> list[dict[str, str]]:
    """The messages of an event stream body (comments dropped)."""
    messages = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            messages.append(fields)
    return messages


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
