"""Benchmark: one hostile tenant against the job API (issue 22), `vidgen api` in its own process, and what the abuse
costs the process and the other tenants. Prints JSON.

- unauthenticated uploads: 25 connections without a credential, each sending 20 MB of a 21 MB `POST /v1/videos` and
  then stalling: the API's resident memory before, at its peak, while they stall and after they closed; what they
  were answered, and how fast; `/healthz` meanwhile;
- one authenticated 19 MiB upload (a real PNG, multipart): the peak of resident memory over where it started;
- stream flood: with `VIDGEN_API_MAX_CONNECTIONS=60`, tenant B opens event streams on its own queued job, within its
  rate limit, until refused (60 at most): how many it got and what refused the rest; meanwhile tenant A's calls
  (status, latency), `/healthz`, `/readyz` and the console page;
- readiness flood: 20 clients calling `/readyz` for 5 s: those calls per second against the S3 `HEAD` and Kafka
  `Metadata` requests per second the API made (counted by taps in proxies in front of S3 and the broker).

    python -m bench.hostile_api [--checkout DIR]

`--checkout` runs the API of another checkout (a worktree of an older commit, with its own `.venv`) against the
same clients, for the figures before a change; probes are looked for on the operator port, then on the API's own.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import secrets
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from bench.hostile_clients import (
    ApiUnderTest,
    KafkaRequestCount,
    ProbeWatch,
    RssSampler,
    S3RequestCount,
    api_process,
    stalled_upload,
)
from bench.infra import REPO_ROOT, machine_info
from consumer.api.api_settings import ApiSettings
from consumer.api.auth.api_keys import create_key
from consumer.dev.embedded import TcpProxy, free_port, isolated_settings, kafka_broker, s3_server
from consumer.settings import Settings

__all__ = [
    "authenticated_upload",
    "big_png",
    "main",
    "readiness_flood",
    "started_api",
    "stream_flood",
    "unauthenticated_uploads",
]

_SMALL = {"width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}
_KAFKA_METADATA = 3


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def started_api(
    settings: Settings,
    folder: Path,
    *,
    checkout: Path = REPO_ROOT,
    tenants: tuple[str, ...] = ("shop-a", "shop-b"),
    **api_overrides: Any,
) -> AsyncIterator[tuple[ApiUnderTest, dict[str, str]]]:
    """`vidgen api` of `checkout` with `api_overrides` (ApiSettings fields), and an API key per tenant."""
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "operator_port": free_port(),
        "state_path": str(folder / f"view-{uuid.uuid4().hex[:6]}.sqlite3"),
        "keys_file": str(folder / "api-keys"),
        "id_key": secrets.token_urlsafe(32),
        **api_overrides,
    }
    api = ApiSettings(**fields)
    keys = {tenant: create_key(folder / "api-keys", tenant) for tenant in tenants}
    env = {name: value for name, value in os.environ.items() if not name.startswith("VIDGEN_")}
    env |= settings.model_copy(update={"log_format": "text", "log_level": "WARNING"}).as_environment()
    env |= api.as_environment()
    log_path = folder / f"api-{uuid.uuid4().hex[:6]}.log"
    ports = {"port": fields["port"], "operator_port": fields["operator_port"]}  # as set, whatever the model knows
    async with api_process(env, **ports, log_path=log_path, checkout=checkout) as running:
        yield running, keys


async def unauthenticated_uploads(
    api: ApiUnderTest, *, connections: int = 25, declared: int = 21_000_000, send: int = 20_000_000
) -> dict[str, Any]:
    before = api.rss_mib()
    async with ProbeWatch(f"{api.probe_url}/healthz").watching() as probes:
        with RssSampler(api.process.pid).sampling() as rss:
            stalls = await asyncio.gather(
                *(
                    stalled_upload(api.port, declared=declared, send=send, headers={}, answer_timeout_s=5.0)
                    for _ in range(connections)
                )
            )
            await asyncio.sleep(1.0)  # every one stalls, the connection open
            stalled = api.rss_mib()
            for stall in stalls:
                stall.writer.close()
        await asyncio.sleep(3.0)
    answered = [stall.answered_s for stall in stalls if stall.answered_s is not None]
    return {
        "connections": connections,
        "declared_bytes": declared,
        "mean_sent_bytes": round(sum(stall.sent for stall in stalls) / connections),
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(rss.peak_mib, 1),
        "rss_while_stalled_mib": round(stalled, 1),
        "rss_after_close_mib": round(api.rss_mib(), 1),
        "answers": dict(Counter(str(stall.status) for stall in stalls)),
        "slowest_answer_s": round(max(answered), 3) if answered else None,
        "healthz": dict(probes.answers),
    }


def big_png(target_bytes: int = 19 * (1 << 20)) -> bytes:
    """A real PNG of about `target_bytes` (random pixels, stored without compression)."""
    side = int((target_bytes / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


async def authenticated_upload(api: ApiUnderTest, key: str, image: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("prompt", "a red sneaker on a white table")
    for name, value in _SMALL.items():
        form.add_field(name, str(value))
    form.add_field("input_reference", io.BytesIO(image), filename="big.png", content_type="image/png")
    before = api.rss_mib()
    with RssSampler(api.process.pid).sampling() as rss:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{api.url}/v1/videos", data=form, headers=_bearer(key)) as response,
        ):
            answer = await response.json(content_type=None)
    return {
        "image_mib": round(len(image) / (1 << 20), 2),
        "status": response.status,
        "code": answer.get("error", {}).get("code") if isinstance(answer, dict) else None,
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(rss.peak_mib, 1),
        "peak_increase_mib": round(rss.peak_mib - before, 1),
    }


async def _timed(http: aiohttp.ClientSession, method: str, url: str, **options: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        async with http.request(method, url, **options) as response:
            if response.content_type != "text/event-stream":  # a stream that opened is answer enough
                await response.read()
            status: int | str = response.status
    except aiohttp.ClientError as exc:
        status = type(exc).__name__
    return {"status": status, "ms": round((time.monotonic() - started) * 1000, 1)}


async def stream_flood(api: ApiUnderTest, keys: dict[str, str], *, streams: int = 60) -> dict[str, Any]:
    """B (`shop-b`) holds as many streams as it may; A (`shop-a`) calls meanwhile. Run against an API started with
    VIDGEN_API_MAX_CONNECTIONS=60."""
    body = {"prompt": "a blue mug", **_SMALL}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as b_http, aiohttp.ClientSession() as a_http:
        jobs = {}
        for tenant, http in (("shop-a", a_http), ("shop-b", b_http)):
            async with http.post(f"{api.url}/v1/videos", json=body, headers=_bearer(keys[tenant])) as response:
                jobs[tenant] = (await response.json())["id"]
        opened: list[aiohttp.ClientResponse] = []
        refused: dict[str, Any] | None = None
        started = time.monotonic()
        events = f"{api.url}/v1/videos/{jobs['shop-b']}/events"
        while len(opened) < streams and refused is None:
            response = await b_http.get(events, headers=_bearer(keys["shop-b"]))
            if response.status == 200:
                opened.append(response)
                continue
            answer = await response.json(content_type=None) if response.content_type == "application/json" else None
            code = answer["error"]["code"] if isinstance(answer, dict) else (await response.text()).strip()
            response.release()
            if code == "rate_limited":  # a client within its rate limit waits as told
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            refused = {"status": response.status, "code": code}
        opening_s = time.monotonic() - started
        a_key = _bearer(keys["shop-a"])
        calls = {
            "a_get_job": await _timed(a_http, "GET", f"{api.url}/v1/videos/{jobs['shop-a']}", headers=a_key),
            "a_list": await _timed(a_http, "GET", f"{api.url}/v1/videos", headers=a_key),
            "a_submit": await _timed(a_http, "POST", f"{api.url}/v1/videos", json=body, headers=a_key),
            "a_stream": await _timed(a_http, "GET", f"{api.url}/v1/videos/{jobs['shop-a']}/events", headers=a_key),
            "healthz": await _timed(a_http, "GET", f"{api.probe_url}/healthz"),
            "readyz": await _timed(a_http, "GET", f"{api.probe_url}/readyz"),
            "console": await _timed(a_http, "GET", f"{api.url}/"),
        }
        for response in opened:
            response.close()
    return {"b_streams_open": len(opened), "b_opening_s": round(opening_s, 2), "b_refused": refused, **calls}


async def readiness_flood(
    api: ApiUnderTest,
    s3_heads: S3RequestCount,
    kafka_metadata: KafkaRequestCount,
    *,
    clients: int = 20,
    seconds: float = 5.0,
) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    s3_before, kafka_before = s3_heads.count, kafka_metadata.count
    deadline = time.monotonic() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            async with http.get(f"{api.probe_url}/readyz") as response:
                statuses[str(response.status)] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return {
        "readyz_per_s": round(statuses.total() / seconds, 1),
        "readyz_statuses": dict(statuses),
        "s3_head_per_s": round((s3_heads.count - s3_before) / seconds, 2),
        "kafka_metadata_per_s": round((kafka_metadata.count - kafka_before) / seconds, 2),
    }


async def _measure(
    checkout: Path, bootstrap: str, s3_endpoint: str, taps: tuple[S3RequestCount, KafkaRequestCount], folder: Path
) -> dict[str, Any]:
    def fresh(label: str) -> Settings:
        return isolated_settings(bootstrap, s3_endpoint, f"{label}-{uuid.uuid4().hex[:6]}", topic_partitions=2)

    report: dict[str, Any] = {"machine": machine_info(), "checkout": str(checkout)}
    async with started_api(fresh("bodies"), folder, checkout=checkout) as (api, _):
        report["unauthenticated_uploads"] = await unauthenticated_uploads(api)
    async with started_api(fresh("upload"), folder, checkout=checkout) as (api, keys):
        report["authenticated_upload"] = await authenticated_upload(api, keys["shop-a"], big_png())
    async with started_api(fresh("streams"), folder, checkout=checkout, max_connections=60) as (api, keys):
        report["stream_flood"] = await stream_flood(api, keys)
    async with started_api(fresh("ready"), folder, checkout=checkout) as (api, _):
        report["readiness_flood"] = await readiness_flood(api, *taps)
    return report


async def _run(checkout: Path) -> dict[str, Any]:
    # One API runs at a time: every HEAD through the proxy while /readyz is flooded is that API's.
    s3_heads, kafka_metadata = S3RequestCount(b"HEAD /"), KafkaRequestCount(_KAFKA_METADATA)
    broker_port, kafka_proxy_port = free_port(), free_port()
    with (
        tempfile.TemporaryDirectory(prefix="vidgen-hostile-") as tmp,
        kafka_broker(broker_port, advertised_port=kafka_proxy_port, log_path=Path(tmp) / "tansu.log"),
        s3_server() as s3_endpoint,
    ):
        kafka_proxy = TcpProxy(broker_port, port=kafka_proxy_port, tap=kafka_metadata)
        s3_proxy = TcpProxy(int(s3_endpoint.rsplit(":", 1)[1]), tap=s3_heads)
        await kafka_proxy.start()
        await s3_proxy.start()
        try:
            return await _measure(
                checkout,
                f"127.0.0.1:{kafka_proxy_port}",
                f"http://127.0.0.1:{s3_proxy.port}",
                (s3_heads, kafka_metadata),
                Path(tmp),
            )
        finally:
            await kafka_proxy.close()
            await s3_proxy.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_api", description=__doc__)
    parser.add_argument("--checkout", type=Path, default=REPO_ROOT, help="the checkout whose API to run")
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # moto accepts any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server would log every request
    print(json.dumps(asyncio.run(_run(args.checkout.resolve())), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
