"""API keys for server-to-server callers, kept only as SHA-256 hashes with their tenant in a text file.

A key is `vgk_` and 43 characters of URL-safe base64 (32 random bytes): with that much entropy a plain hash is as
good as a slow one, and lets every replica check a key in microseconds. The file holds one `<hex sha256> <tenant>`
per line (`#` comments allowed); `vidgen api-key create --tenant T` appends one and prints the key once. A running
API rereads the file when it changes (looking at most once a second), so keys are added and revoked (delete the line)
without a restart. A key's id is the first 16 hex characters of its hash: what a content link and an open event
stream remember of the key that opened them, to end when it is revoked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from consumer.core.intake import usable_id

__all__ = ["KEY_PREFIX", "ApiKeys", "create_key", "hash_key", "key_id", "parse_keys"]

log = logging.getLogger(__name__)

KEY_PREFIX = "vgk_"
_RECHECK_S = 1.0
_KEY_ID_CHARS = 16


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id(key: str) -> str:
    """The key's id: the start of its hash, which names it without revealing anything that authenticates."""
    return hash_key(key)[:_KEY_ID_CHARS]


def create_key(path: Path, tenant_id: str, *, entropy: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """Append a new key's hash for `tenant_id` to `path` (created owner-only if missing) and return the key."""
    if usable_id(tenant_id, max_length=64) is None:
        raise ValueError("tenant must be 1-64 characters of [A-Za-z0-9._:-]")
    key = KEY_PREFIX + base64.urlsafe_b64encode(entropy(32)).decode("ascii").rstrip("=")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as file:
        file.write(f"{hash_key(key)} {tenant_id}\n")  # one write of one line: appends never interleave
    return key


def parse_keys(text: str) -> list[tuple[str, str]]:
    """(hash, tenant) pairs; malformed lines are skipped and logged by number (never by content)."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split()
        tenant = usable_id(parts[1], max_length=64) if len(parts) == 2 else None
        digest = parts[0].lower()
        if tenant is None or len(digest) != 64 or any(char not in "0123456789abcdef" for char in digest):
            log.warning("API keys file: line %d is not '<sha256 hex> <tenant>'; skipped", number)
            continue
        entries.append((digest, tenant))
    return entries


class ApiKeys:
    """The keys file, reread (off the event loop) when its size, time or inode changes."""

    def __init__(self, path: Path, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._monotonic = monotonic
        self._entries: list[tuple[bytes, str]] = []
        self._tenant_of_id: dict[str, str] = {}
        self._signature: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._lock = asyncio.Lock()

    async def tenant_for(self, key: str) -> str | None:
        """The key's tenant, or None. Every entry is compared in constant time, so timing says nothing about
        which hashes exist."""
        await self._refresh()
        presented = hashlib.sha256(key.encode("utf-8")).digest()
        found = None
        for digest, tenant in self._entries:
            if hmac.compare_digest(digest, presented):
                found = tenant
        return found

    async def holds(self, id_of_key: str, tenant_id: str) -> bool:
        """Whether the file (as reread at most a second ago) still holds the key with this id, for this tenant."""
        await self._refresh()
        return self._tenant_of_id.get(id_of_key) == tenant_id

    async def _refresh(self) -> None:
        # While a reread is under way every caller waits for it (a first burst of calls must not find no keys).
        if self._monotonic() - self._checked < _RECHECK_S and not self._lock.locked():
            return
        async with self._lock:
            if self._monotonic() - self._checked < _RECHECK_S:
                return
            loaded = await asyncio.to_thread(self._load_if_changed)
            self._checked = self._monotonic()
            if loaded is not None:
                self._entries = loaded
                self._tenant_of_id = {digest.hex()[:_KEY_ID_CHARS]: tenant for digest, tenant in loaded}
                log.info("API keys file read: %d keys", len(loaded))

    def _load_if_changed(self) -> list[tuple[bytes, str]] | None:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            if self._signature is None and not self._entries:
                return None
            self._signature = None
            log.warning("API keys file is missing: no key is accepted")
            return []
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature == self._signature:
            return None
        self._signature = signature
        text = self._path.read_text(encoding="utf-8")
        return [(bytes.fromhex(digest), tenant) for digest, tenant in parse_keys(text)]
