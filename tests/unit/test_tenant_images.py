"""A tenant reads only its own start images: from the output bucket, only objects under its own upload prefix;
anything in a shared image bucket. Forbidden and missing look the same to the requester, and a forbidden key
never reaches S3. The key rules alone; the real worker, S3 server and CLI are in tests/integration/."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.keys import is_plain_key, object_keys, tenant_may_read, upload_key, upload_prefix
from consumer.errors import ImageNotFound, ImageUrlForbidden
from consumer.images.https_download import FetchPolicy
from consumer.images.sources import S3Sources, StartImageSource

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
