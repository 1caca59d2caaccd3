"""Hardening of the product-created hook over real HTTP: ids published to the real broker, text the worker would reject
refused before the shop is answered (and, where the worker's verdict matters, a real worker with the tiny model), and
slow clients that cannot hold the hook's connections (the real entry point as a subprocess)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from opentelemetry.trace import NoOpTracer

from consumer.core.intake import parse_request
from consumer.dev.embedded import free_port
from consumer.settings import Settings
from producer_examples.hook_settings import HookSettings
from producer_examples.product_hook import ROUTE, make_app
from producer_examples.products import (
    DEFAULT_TEMPLATE,
)
from producer_examples.signing import SIGNATURE_HEADER, sign
from schemas.events import ID_PATTERN, VideoRequest, VideoResult
from tests.support import REPO, SMALL, KafkaClient, product_payload

SECRET = "hook-signing-secret-for-tests"
ID_KEY = "request-id-key-for-tests-only-0123456789abcdef"
OTHER_ID_KEY = "another-request-id-key-for-tests-0123456789ab"
SUFFIX = DEFAULT_TEMPLATE.split("{description}")[1].strip()  # the template's fixed text after the description


def _hook_settings(**overrides: Any) -> HookSettings:
    fields: dict[str, Any] = {
        "secret": SECRET,
        "id_key": ID_KEY,
        "rate_per_s": 100.0,
        "burst": 100,
        **{key: SMALL[key] for key in ("width", "height", "num_frames", "num_inference_steps")},
        **overrides,
    }
    return HookSettings(**fields)


def _signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return _signed_bytes(json.dumps(payload).encode())


def _signed_bytes(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET, timestamp=int(time.time()))}


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    text: str


@dataclass
class InProcessHook:
    server: TestServer
    http: aiohttp.ClientSession

    async def post(self, payload: dict[str, Any]) -> Answer:
        body, headers = _signed(payload)
        async with self.http.post(self.server.make_url(ROUTE), data=body, headers=headers) as response:
            text = await response.text()
            return Answer(response.status, json.loads(text), text)


@contextlib.asynccontextmanager
async def _in_process_hook(settings: Settings, **overrides: Any) -> AsyncIterator[InProcessHook]:
    server = TestServer(make_app(_hook_settings(**overrides), settings, tracer=NoOpTracer()), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield InProcessHook(server, http)
    finally:
        await server.close()


# ---------------------------------------------------------------------------------- findings 3 and 4: ids


async def test_request_ids_are_keyed_so_they_cannot_be_predicted_yet_repeat_for_a_retried_webhook(
    settings: Settings, kafka: KafkaClient
) -> None:
    async with _in_process_hook(settings) as hook, _in_process_hook(settings, id_key=OTHER_ID_KEY) as other:
        first = await hook.post(product_payload())
        retried = await hook.post(product_payload())
        elsewhere = await other.post(product_payload())
    async with _in_process_hook(settings) as restarted:
        after_restart = await restarted.post(product_payload())

    request_id = first.body["request_id"]
    assert first.status == 202 and retried.body == {"request_id": request_id, "duplicate": True, "degraded": False}
    assert after_restart.body["request_id"] == request_id  # deterministic across restarts, for deduplication
    # The same webhook under another key gets an unrelated id: the id depends on a secret, not on public fields.
    assert elsewhere.status == 202 and elsewhere.body["request_id"] != request_id
    assert re.fullmatch(r"hook:[0-9a-f]{32}", request_id), request_id
    assert len(request_id) <= 128 and re.fullmatch(ID_PATTERN, request_id)


async def test_products_whose_ids_used_to_collide_get_distinct_ids_and_are_both_published(
    settings: Settings, kafka: KafkaClient
) -> None:
    async with _in_process_hook(settings) as hook:
        first = await hook.post(product_payload("shoes:42", shop_id="acme"))
        second = await hook.post(product_payload("42", shop_id="acme:shoes"))

    assert (first.status, first.body["duplicate"]) == (202, False)
    assert (second.status, second.body["duplicate"]) == (202, False), second.body
    assert first.body["request_id"] != second.body["request_id"]
    records = await kafka.read(settings.bulk_topic, 2)
    published = [VideoRequest.model_validate_json(record.value) for record in records]
    assert {(r.request_id, r.tenant_id, r.metadata["product_id"]) for r in published} == {
        (first.body["request_id"], "acme", "shoes:42"),
        (second.body["request_id"], "acme:shoes", "42"),
    }


# ------------------------------------------------------------------- finding 14: the worker's rules at the hook


async def test_text_the_worker_would_reject_is_refused_with_422_naming_the_field(
    settings: Settings, kafka: KafkaClient
) -> None:
    banned = settings.model_copy(update={"banned_terms": ("contraband",)})
    cases = [
        (product_payload(title="Red \u202esneaker"), "title", "invalid_field"),  # RIGHT-TO-LEFT OVERRIDE
        (product_payload(title="Red\u200bsneaker"), "title", "invalid_field"),  # ZERO WIDTH SPACE
        (product_payload(description="Mesh \u2066upper\u2069."), "description", "invalid_field"),  # bidi isolates
        (product_payload(description="Soft\x00sole"), "description", "invalid_field"),  # NUL
        (product_payload(description="Ships with contraband inside."), "description", "content_policy"),
        (product_payload(title="Contraband sneaker"), "title", "content_policy"),
    ]
    async with _in_process_hook(banned) as hook:
        answers = [await hook.post(payload) for payload, _, _ in cases]
        fine = await hook.post(product_payload("p-ok"))

    for (payload, field, code), answer in zip(cases, answers, strict=True):
        assert answer.status == 422, (payload, answer.body)
        assert (answer.body["error"]["field"], answer.body["error"]["code"]) == (field, code), answer.body
        # Nothing the shop sent is echoed: not the banned word, not the invisible character.
        assert "contraband" not in answer.text.lower()
        assert not re.search(r"[\u200b\u202e\u2066\u2069\x00]", answer.body["error"]["message"])
    assert fine.status == 202
    [record] = await kafka.read(settings.bulk_topic, 1)  # only the clean product was published
    assert record.key.decode() == fine.body["request_id"]


@pytest.mark.timeout(120)
async def test_long_cjk_and_nfc_growing_descriptions_are_trimmed_so_the_worker_renders_them(
    settings: Settings, kafka: KafkaClient, store: Any, start_worker: Any
) -> None:
    cjk = "轻盈透气的网面鞋身搭配白色橡胶鞋底" * 90  # 1,620 characters and not one space
    growing = "\ufb2c" * 400  # 400 characters that NFC turns into 1,200 (U+05E9 U+05BC U+05C1 each)
    async with _in_process_hook(settings) as hook:
        answers = [
            await hook.post(product_payload("p-cjk", description=cjk)),
            await hook.post(product_payload("p-nfc", description=growing)),
        ]
    assert [answer.status for answer in answers] == [202, 202], [answer.body for answer in answers]

    await start_worker(settings)
    results: dict[str, VideoResult] = await kafka.results(2)
    assert [results[answer.body["request_id"]].status for answer in answers] == ["completed", "completed"], [
        results[answer.body["request_id"]].error for answer in answers
    ]

    records = {r.key.decode(): r for r in await kafka.read(settings.bulk_topic, 2)}
    cjk_request = parse_request(records[answers[0].body["request_id"]].value, max_bytes=settings.max_record_bytes)
    assert isinstance(cjk_request, VideoRequest), cjk_request
    prompt = cjk_request.prompt
    # The template's fixed text survives; only the description is cut, and it still starts the same way.
    assert prompt.startswith("A short product video of Red sneaker. 轻盈透气的网面鞋身"), prompt[:80]
    assert prompt.endswith(SUFFIX), prompt[-80:]
    assert len(prompt) <= 1000


# ---------------------------------------------------------------- finding 8: slow clients, real entry point


@dataclass
class HookProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def open_descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


async def _healthy(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def hook_process(settings: Settings, tmp_path: Path) -> Iterator[Any]:
    """Starts `python -m producer_examples.product_hook` with extra VIDGEN_HOOK_* settings; `nofile` caps its file
    descriptors (RLIMIT_NOFILE) the way a container or systemd unit would."""
    started: list[subprocess.Popen[bytes]] = []

    async def start(*, nofile: int | None = None, **hook: object) -> HookProcess:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}
        env |= settings.model_copy(update={"log_format": "text"}).as_environment()
        env |= {
            "VIDGEN_HOOK_SECRET": SECRET,
            "VIDGEN_HOOK_ID_KEY": ID_KEY,
            "VIDGEN_HOOK_HOST": "127.0.0.1",
            "VIDGEN_HOOK_PORT": str(port),
            **{f"VIDGEN_HOOK_{name.upper()}": str(value) for name, value in hook.items()},
        }
        command = [sys.executable, "-m", "producer_examples.product_hook"]
        if nofile is not None:
            command = ["sh", "-c", f'ulimit -n {nofile} && exec "$0" "$@"', *command]
        log = tmp_path / f"hook-{port}.log"
        process = await asyncio.to_thread(_spawn, command, env, log)
        started.append(process)
        async with asyncio.timeout(60):
            while not await _healthy(port):
                assert process.poll() is None, log.read_text()
                await asyncio.sleep(0.1)
        return HookProcess(process, port, log)

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(4096):
            received += chunk
    return received


async def _drip(writers: list[asyncio.StreamWriter], *, every_s: float) -> None:
    """One header byte per connection per interval, forever: the slowloris pattern."""
    while True:
        for writer in writers:
            if not writer.is_closing():
                with contextlib.suppress(ConnectionError):
                    writer.write(b"x")
        await asyncio.sleep(every_s)


async def test_a_client_announcing_a_body_and_sending_nothing_is_cut_off_within_the_body_timeout(
    hook_process: Any,
) -> None:
    hook = await hook_process(body_timeout_s=1.0, header_timeout_s=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    writer.write(f"POST {ROUTE} HTTP/1.1\r\nHost: hook\r\nContent-Length: 60000\r\n\r\n".encode())
    started = time.monotonic()
    try:
        received = await asyncio.wait_for(_read_until_closed(reader), 15)
    finally:
        writer.close()
    elapsed = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert elapsed < 1.0 + 2.0, elapsed
    error = json.loads(received.partition(b"\r\n\r\n")[2])["error"]  # the job API's shape, as every refusal
    assert (error["code"], error["type"]) == ("request_timeout", "invalid_request_error"), error


async def test_every_refusal_of_the_hook_process_is_in_the_job_apis_error_shape(hook_process: Any) -> None:
    """Through `python -m producer_examples.product_hook`: signature, payload, the worker's text rule, the rate limit
    and aiohttp's own refusals (404, 405, 413) all answer `{"error": {"message", "type", "param", "code", "field"}}`
    as JSON. (Busy: tests/integration/test_hook_degradation.py; the body deadline: the test above.)"""
    hook = await hook_process(rate_per_s=0.01, burst=1, max_body_bytes=1024)
    unsigned = json.dumps(product_payload()).encode()
    missing_title = {key: value for key, value in product_payload().items() if key != "title"}
    cases: list[tuple[str, str, bytes, dict[str, str], int, str, str | None]] = [
        ("POST", ROUTE, unsigned, {"Content-Type": "application/json"}, 401, "invalid_signature", SIGNATURE_HEADER),
        ("POST", ROUTE, *_signed_bytes(b"not json"), 422, "invalid_json", None),
        ("POST", ROUTE, *_signed(missing_title), 422, "missing_field", "title"),
        ("POST", ROUTE, *_signed(product_payload(title="Red\u200bsneaker")), 422, "invalid_field", "title"),
        ("POST", ROUTE, *_signed(product_payload("p-1")), 202, "", None),  # the shop's one token
        ("POST", ROUTE, *_signed(product_payload("p-2")), 429, "rate_limited", None),
        ("GET", "/no-such-route", b"", {}, 404, "not_found", None),
        ("GET", ROUTE, b"", {}, 405, "method_not_allowed", None),
        ("POST", ROUTE, *_signed_bytes(b"x" * 2048), 413, "body_too_large", None),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, body, headers, status, code, field in cases:
            url = f"http://127.0.0.1:{hook.port}{path}"
            async with http.request(method, url, data=body, headers=headers) as response:
                answer = await response.json(content_type=None)
                assert response.status == status, (path, answer)
                if status == 202:
                    assert answer["degraded"] is False and answer["duplicate"] is False, answer
                    continue
                assert response.content_type == "application/json", (status, response.content_type)
                error = answer["error"]
                assert set(error) == {"message", "type", "param", "code", "field"}, answer
                assert (error["code"], error["field"], error["param"]) == (code, field, field), answer
                assert error["message"] and "\u200b" not in error["message"], answer
    assert hook.process.poll() is None  # none of it hurt the process


async def test_a_client_dripping_its_headers_is_cut_off_within_the_header_timeout(hook_process: Any) -> None:
    hook = await hook_process(body_timeout_s=1.0, header_timeout_s=1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    writer.write(f"POST {ROUTE} HTTP/1.1\r\nHost: hook\r\nX-Slow: ".encode())
    started = time.monotonic()
    drip = asyncio.create_task(_drip([writer], every_s=0.2))
    try:
        await asyncio.wait_for(_read_until_closed(reader), 15)
    finally:
        drip.cancel()
        writer.close()
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 2.0, elapsed


async def test_dripping_connections_do_not_keep_a_signed_request_waiting(hook_process: Any, kafka: KafkaClient) -> None:
    """300 slowloris connections against a hook allowed 256 file descriptors (a tight but real container limit):
    the connection bound keeps descriptors free and the longest-waiting drippers make room for the real request."""
    hook = await hook_process(nofile=256, max_connections=128, header_timeout_s=60)
    baseline = hook.open_descriptors()
    writers: list[asyncio.StreamWriter] = []
    for _ in range(300):
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", hook.port), 10)
        writer.write(f"POST {ROUTE} HTTP/1.1\r\nHost: hook\r\nX-Slow: ".encode())
        writers.append(writer)
    drip = asyncio.create_task(_drip(writers, every_s=0.5))
    try:
        body, headers = _signed(product_payload("p-under-attack"))
        started = time.monotonic()
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
            http.post(f"http://127.0.0.1:{hook.port}{ROUTE}", data=body, headers=headers) as response,
        ):
            status, answer = response.status, await response.json()
        elapsed = time.monotonic() - started
        descriptors = hook.open_descriptors()
    finally:
        drip.cancel()
        for writer in writers:
            writer.close()
    assert status == 202, answer
    assert elapsed < 2.0, elapsed
    assert descriptors <= baseline + 128 + 2, (baseline, descriptors)
