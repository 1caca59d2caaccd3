"""A tenant reads only its own start images: from the output bucket, only objects under its own upload prefix;
anything in a shared image bucket. Forbidden and missing look the same to the requester, and a forbidden key
never reaches S3."""

from __future__ import annotations

import asyncio
import logging
import posixpath
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.keys import is_plain_key, object_keys, tenant_may_read, upload_key, upload_prefix
from consumer.dev.demo import _demo, product_image
from consumer.errors import ImageNotFound, ImageUrlForbidden
from consumer.job.https_download import FetchPolicy
from consumer.job.start_image import S3Sources, StartImageSource
from consumer.settings import Settings
from consumer.storage import ObjectStore, open_s3_client
from producer_examples import publish_request
from schemas.events import VideoRequest, VideoResult
from tests.conftest import KafkaClient, request_body

SOURCES = S3Sources(output_bucket="out", key_prefix="env/", shared_buckets=frozenset({"shared", "out"}))
A_DIR = upload_prefix(prefix="env/", tenant_id="shop-a")
B_DIR = upload_prefix(prefix="env/", tenant_id="shop-b")
A_UPLOAD = upload_key(b"a-image", "a.png", prefix="env/", tenant_id="shop-a")
A_POSTER = object_keys(prefix="env/", tenant_id="shop-a", key="ab" * 32, poster_ext="jpeg").poster

# ---------------------------------------------------------------------------------------------- pure key rules


def test_uploads_live_in_a_hashed_folder_per_tenant_under_the_key_prefix() -> None:
    assert A_UPLOAD.startswith(A_DIR) and A_DIR.startswith("env/uploads/") and A_DIR.endswith("/")
    assert A_DIR != B_DIR and "shop-a" not in A_DIR  # the tenant is hashed, never verbatim
    assert upload_key(b"a-image", "OTHER.PNG", prefix="env/", tenant_id="shop-a") == A_UPLOAD  # by content
    assert upload_key(b"a-image", "a.exe", prefix="env/", tenant_id="shop-a").removeprefix(A_DIR).isalnum()
    assert upload_key(b"a-image", "a.png", prefix="env/", tenant_id="shop-b") != A_UPLOAD


@pytest.mark.parametrize(
    ("tenant", "key", "readable"),
    [
        ("shop-a", A_UPLOAD, True),
        ("shop-a", f"{A_DIR}nested/product_1.jpeg", True),
        ("shop-b", A_UPLOAD, False),  # another tenant's upload
        ("shop-a", A_POSTER, False),  # videos/ and posters, even the tenant's own
        ("shop-a", A_POSTER.replace(".poster.jpeg", ".mp4"), False),
        ("shop-a", A_DIR, False),  # the folder itself
        ("shop-a", A_UPLOAD.removeprefix("env/"), False),  # outside the key prefix
        ("shop-b", f"{B_DIR}../{A_UPLOAD.removeprefix('env/uploads/')}", False),
        ("shop-b", f"{B_DIR}./x.png", False),
        ("shop-b", f"{B_DIR}.../x.png", False),
        ("shop-b", f"{B_DIR}/x.png", False),  # empty segment
        ("shop-b", f"{B_DIR}x.png/", False),
        ("shop-b", f"/{B_DIR}x.png", False),
        ("shop-b", f"{B_DIR}%2e%2e/x.png", False),
        ("shop-b", f"{B_DIR}..\\x.png", False),
        ("shop-b", f"{B_DIR}x.png?versionId=1", False),
        ("shop-b", f"{B_DIR}x.png#frag", False),
        ("shop-b", f"{B_DIR}x\n.png", False),
        ("shop-b", f"{B_DIR}x\u2024png", False),  # one-dot leader, a look-alike of "."
        ("shop-b", f"{B_DIR}x y.png", False),
    ],
)
def test_a_tenant_may_read_only_plain_keys_in_its_own_upload_folder(tenant: str, key: str, readable: bool) -> None:
    assert tenant_may_read(key, prefix="env/", tenant_id=tenant) is readable


@given(st.text(alphabet=st.sampled_from(list("ab./_-%\\?#\n ")), max_size=24))
def test_no_readable_key_normalises_to_somewhere_else(rest: str) -> None:
    key = B_DIR + rest
    if tenant_may_read(key, prefix="env/", tenant_id="shop-b"):
        assert posixpath.normpath(key) == key and key.startswith(B_DIR) and is_plain_key(rest)


def test_shared_buckets_serve_plain_keys_to_anyone_and_the_output_bucket_is_never_shared() -> None:
    assert SOURCES.locate("s3://shared/catalog/shoe.png", tenant_id="shop-b") == ("shared", "catalog/shoe.png")
    assert SOURCES.locate(f"s3://out/{A_UPLOAD}", tenant_id="shop-a") == ("out", A_UPLOAD)
    with pytest.raises(ImageNotFound):
        SOURCES.locate(f"s3://out/{A_UPLOAD}", tenant_id="shop-b")  # "out" listed as shared changes nothing
    with pytest.raises(ImageNotFound):
        SOURCES.locate("s3://shared/catalog/../secret.png", tenant_id="shop-b")
    with pytest.raises(ImageUrlForbidden, match=r"allowed: out, shared$") as forbidden:
        SOURCES.locate("s3://elsewhere/x.png", tenant_id="shop-a")
    assert "elsewhere" not in forbidden.value.message


class _RecordingStore:
    """Stands in for S3 in this unit test only: records every read."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    async def get(self, bucket: str, key: str, *, max_bytes: int) -> bytes | None:
        self.reads.append((bucket, key))
        return None


async def test_a_forbidden_key_is_answered_like_a_missing_one_without_touching_storage() -> None:
    store = _RecordingStore()
    policy = FetchPolicy(max_bytes=1024, connect_timeout_s=1, read_timeout_s=1, max_redirects=0, host_allowlist=())
    source = StartImageSource(store=store, sources=SOURCES, policy=policy, max_bytes=1024)  # type: ignore[arg-type]
    with pytest.raises(ImageNotFound) as forbidden:
        await source.fetch(f"s3://out/{A_UPLOAD}", tenant_id="shop-b")
    assert store.reads == []
    with pytest.raises(ImageNotFound) as missing:
        await source.fetch(f"s3://out/{B_DIR}missing.png", tenant_id="shop-b")
    assert store.reads == [("out", f"{B_DIR}missing.png")]
    assert (forbidden.value.message, forbidden.value.field) == (missing.value.message, missing.value.field)
    assert "uploads" not in missing.value.message and "missing" not in missing.value.message


# ---------------------------------------------------------------------- real worker, real S3 server, real CLI

SMALL_CLI = ["--width", "256", "--height", "256", "--frames", "5", "--steps", "2"]


async def _upload_as(tenant: str, image: Path, settings: Settings, kafka: KafkaClient, count: int) -> VideoRequest:
    """`vidgen submit --image` as `tenant`, the real upload side; answers the request it published (the
    `count`-th on the requests topic)."""
    argv = ["--prompt", "a red sneaker", "--image", str(image), "--tenant", tenant, *SMALL_CLI]
    assert await asyncio.to_thread(publish_request.main, argv, settings=settings) == publish_request.EXIT_COMPLETED
    records = await kafka.read(settings.requests_topic, count)
    requests = [VideoRequest.model_validate_json(record.value) for record in records]
    [mine] = [request for request in requests if request.tenant_id == tenant]
    return mine


def _answer(result: VideoResult) -> tuple[str, str | None, str | None, bool | None, str | None]:
    error = result.error
    return (result.status, *((error.code, error.message, error.retryable, error.field) if error else (None,) * 4))


@pytest.mark.integration
async def test_another_tenants_uploads_posters_and_videos_answer_exactly_like_a_missing_key(
    settings: Settings, kafka: KafkaClient, start_worker: Any, tmp_path: Path, caplog: Any
) -> None:
    settings = settings.model_copy(update={"s3_key_prefix": "pfx/"})
    await start_worker(settings)
    bucket = settings.s3_bucket
    (tmp_path / "a.png").write_bytes(product_image(256, 256))
    (tmp_path / "b.png").write_bytes(product_image(320, 256))

    mine_a = await _upload_as("shop-a", tmp_path / "a.png", settings, kafka, 1)
    assert mine_a.image_url is not None
    [result_a] = (await kafka.results(1)).values()
    assert result_a.status == "completed", result_a.error  # A reads its own upload
    assert result_a.video is not None
    mine_b = await _upload_as("shop-b", tmp_path / "b.png", settings, kafka, 2)
    assert mine_b.image_url is not None
    a_key = mine_a.image_url.removeprefix(f"s3://{bucket}/")
    b_dir = mine_b.image_url.removeprefix(f"s3://{bucket}/").rsplit("/", 1)[0]
    escape = "/".join([".."] * (b_dir.count("/") + 1))
    probes = {
        "missing-own": f"s3://{bucket}/{b_dir}/{'0' * 32}.png",  # the reference answer: B's own folder, no object
        "a-upload": mine_a.image_url,
        "a-poster": result_a.video.poster_uri,
        "a-video": result_a.video.uri,
        "missing-elsewhere": f"s3://{bucket}/{settings.s3_key_prefix}uploads/never-uploaded.png",
        "dot-dot": f"s3://{bucket}/{b_dir}/{escape}/{a_key}",
        "double-slash": f"s3://{bucket}//{a_key}",
        "percent": f"s3://{bucket}/{b_dir}/%2e%2e/{a_key.rsplit('/', 1)[1]}",
    }
    caplog.set_level(logging.INFO)
    caplog.clear()
    for name, url in probes.items():
        await kafka.send(request_body(f"b-{name}", tenant_id="shop-b", image_url=url))
    results = await kafka.results(2 + len(probes))

    assert results[mine_b.request_id].status == "completed"  # B reads its own upload
    answers = {name: _answer(results[f"b-{name}"]) for name in probes}
    reference = answers["missing-own"]
    assert reference[:2] == ("rejected", "image_not_found") and reference[3] is False
    assert {name: answer for name, answer in answers.items() if answer != reference} == {}
    message = reference[2] or ""
    assert not [word for word in ("uploads", "videos", "pfx/", "0000", b_dir) if word in message], message
    ours = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("consumer"))
    assert not [word for word in (a_key, "never-uploaded", "%2e", "0000") if word in ours], ours
    # The S3 server's own access log: only the probe inside B's folder reached it.
    s3_log = "\n".join(record.getMessage() for record in caplog.records if record.name == "werkzeug")
    assert f"GET /{bucket}/{b_dir}/{'0' * 32}.png" in s3_log
    touched = [name for name, url in probes.items() if name != "missing-own" and url.rsplit("/", 1)[1] in s3_log]
    assert touched == [], s3_log


@pytest.mark.integration
async def test_a_shared_image_bucket_serves_every_tenant(
    settings: Settings, kafka: KafkaClient, start_worker: Any
) -> None:
    shared = f"shared-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"s3_image_buckets": (shared,)})
    async with open_s3_client(settings) as client:
        catalog = ObjectStore(client, bucket=shared, presign_ttl_s=60)
        await catalog.ensure_bucket()
        await catalog.put("catalog/shoe.png", product_image(256, 256), content_type="image/png", metadata={})
    await start_worker(settings)
    url = f"s3://{shared}/catalog/shoe.png"
    for tenant in ("shop-a", "shop-b"):
        await kafka.send(request_body(f"{tenant}-shared", tenant_id=tenant, image_url=url))
    results = await kafka.results(2)
    assert {rid: r.status for rid, r in results.items()} == {"shop-a-shared": "completed", "shop-b-shared": "completed"}


@pytest.mark.integration
async def test_the_demo_uploads_into_its_tenants_folder_and_completes(settings: Settings, tmp_path: Path) -> None:
    assert await _demo(settings.model_copy(update={"s3_key_prefix": "demo-env/"}), tmp_path) == 0
    saved = await asyncio.to_thread(lambda: sorted(path.suffix for path in tmp_path.iterdir()))
    assert saved == [".jpeg", ".mp4"]
