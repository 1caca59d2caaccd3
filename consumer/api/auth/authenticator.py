"""Who is calling: `Authorization: Bearer <API key or JWT>` -> the caller's tenant, or 401.

JWTs are verified by PyJWT (with `cryptography`) against a PEM public key or the identity provider's JWKS,
fetched with aiohttp, cached, and refetched when a token names an unknown `kid` (at most every
`VIDGEN_API_JWKS_MIN_REFRESH_S`). Only asymmetric algorithms; `exp`, `iss` and `aud` required, `nbf` honoured,
with a small leeway. Neither tokens nor keys are ever logged or echoed.

What was granted is checked again while it is used (`still_valid`: an event stream, each second): an API key while
the keys file holds it, a JWT until its `exp` (plus the leeway).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from consumer.api.api_settings import ApiSettings
from consumer.api.auth.api_keys import KEY_PREFIX, ApiKeys, key_id
from consumer.api.auth.jwt_claims import check_header, tenant_from_claims
from consumer.errors import AuthFailure, ClaimError

__all__ = ["Authenticator", "Caller", "JwksCache"]

log = logging.getLogger(__name__)

_MAX_JWKS_BYTES = 1 << 20


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    kind: Literal["api_key", "jwt", "content_link"]  # content_link: consumer.api.auth.content_links
    key_id: str | None = None  # the API key's id (`api_keys.key_id`): valid while the keys file holds it
    expires_at: float | None = None  # Unix seconds: a JWT's `exp` plus the leeway


class JwksCache:
    """The identity provider's signing keys by `kid`."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        min_refresh_s: float,
        timeout_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._session = session
        self._min_refresh_s = min_refresh_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._monotonic = monotonic
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK:
        jwk = self._find(kid)
        if jwk is None and self._monotonic() - self._fetched_at >= self._min_refresh_s:
            async with self._lock:
                if self._monotonic() - self._fetched_at >= self._min_refresh_s:
                    await self._fetch()
            jwk = self._find(kid)
        if jwk is None:
            raise AuthFailure("unknown_key", "token is signed with a key the API does not know")
        try:
            # A key that declares its algorithm verifies only that one; else the (allowed) one the token names.
            return jwt.PyJWK(jwk, algorithm=jwk.get("alg") or algorithm)
        except jwt.PyJWTError as exc:
            raise AuthFailure("bad_key", "token algorithm does not fit its key") from exc

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None:  # a token without kid: only unambiguous with a single signing key
            keys = list(self._keys.values())
            return keys[0] if len(keys) == 1 else None
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = self._monotonic()
        self.fetches += 1
        try:
            async with self._session.get(self._url, timeout=self._timeout, allow_redirects=False) as response:
                response.raise_for_status()
                keys = _signing_keys(await _bounded_body(response))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("JWKS fetch failed: %s", type(exc).__name__)  # the cached keys stay in use
            return
        self._keys = keys
        log.info("JWKS fetched: %d signing keys", len(self._keys))


async def _bounded_body(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body.extend(chunk)
        if len(body) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
    return bytes(body)


def _signing_keys(body: bytes) -> dict[str | None, dict[str, Any]]:
    """The signature keys of a JWKS document by kid; ValueError when it is not one."""
    document = json.loads(body)
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError("JWKS document has no keys list")  # noqa: TRY004 - a bad document, handled as ValueError
    return {key.get("kid"): key for key in keys if isinstance(key, dict) and key.get("use", "sig") == "sig"}


class Authenticator:
    def __init__(
        self,
        api: ApiSettings,
        *,
        keys: ApiKeys | None,
        jwks: JwksCache | None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._keys = keys
        self._jwks = jwks
        self._wall_clock = wall_clock
        self._pem: Any = None
        self._algorithms = api.jwt_algorithms
        if api.jwt_public_key_file:
            self._pem = load_pem_public_key(Path(api.jwt_public_key_file).read_bytes())
            self._algorithms = tuple(name for name in api.jwt_algorithms if name in _fitting_algorithms(self._pem))

    async def authenticate(self, headers: Mapping[str, str]) -> Caller:
        scheme, _, credential = headers.get("Authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthFailure("missing", "send Authorization: Bearer <API key or token>")
        if credential.startswith(KEY_PREFIX):
            return await self._api_key(credential)
        if credential.count(".") == 2:
            return await self._token(credential)
        raise AuthFailure("malformed", "the bearer credential is neither an API key nor a JWT")

    async def still_valid(self, caller: Caller) -> bool:
        """Whether the credential `caller` came from would still be accepted: an API key while the keys file (looked
        at at most once a second) holds it for that tenant, a JWT (or a link it asked for) until it expires."""
        if caller.expires_at is not None and self._wall_clock() >= caller.expires_at:
            return False
        if caller.key_id is None:
            return True
        return self._keys is not None and await self._keys.holds(caller.key_id, caller.tenant_id)

    async def _api_key(self, key: str) -> Caller:
        tenant = await self._keys.tenant_for(key) if self._keys is not None else None
        if tenant is None:
            raise AuthFailure("unknown_api_key", "API key not accepted")
        return Caller(tenant_id=tenant, kind="api_key", key_id=key_id(key))

    async def _token(self, token: str) -> Caller:
        api = self._api
        if self._pem is None and self._jwks is None:
            raise AuthFailure("jwt_disabled", "this API accepts API keys only")
        try:
            header = jwt.get_unverified_header(token)
            kid = check_header(header, self._algorithms)
            algorithm = str(header["alg"])
            key = self._pem if self._jwks is None else await self._jwks.key(kid, algorithm)
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=api.jwt_audience,
                issuer=api.jwt_issuer,
                leeway=api.jwt_leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
            tenant = tenant_from_claims(payload, api.tenant_claim)
            return Caller(tenant_id=tenant, kind="jwt", expires_at=float(payload["exp"]) + api.jwt_leeway_s)
        except ClaimError as exc:
            raise AuthFailure("claims", str(exc)) from exc
        except jwt.PyJWTError as exc:
            reason, message = _describe(exc)
            raise AuthFailure(reason, message) from exc


def _fitting_algorithms(key: Any) -> frozenset[str]:
    """The algorithms a PEM public key can verify (a token naming another is refused before PyJWT sees it)."""
    if isinstance(key, rsa.RSAPublicKey):
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(key, ec.EllipticCurvePublicKey):
        return frozenset({_EC_ALGORITHMS.get(key.curve.name, "")})
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    raise ValueError("the JWT public key must be an RSA, EC (P-256/384/521) or Ed25519/Ed448 key")


_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


# A fixed reason and message per failure, most specific first; PyJWT's own messages may quote the token's claims.
_FAILURES: tuple[tuple[type[jwt.PyJWTError], str, str], ...] = (
    (jwt.ExpiredSignatureError, "expired", "token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "token is not valid yet"),
    (jwt.InvalidAudienceError, "audience", "token audience not accepted"),
    (jwt.InvalidIssuerError, "issuer", "token issuer not accepted"),
    (jwt.MissingRequiredClaimError, "missing_claim", "token lacks a required claim (exp, iss or aud)"),
    (jwt.InvalidSignatureError, "signature", "token signature is not valid"),
    (jwt.InvalidAlgorithmError, "algorithm", "token algorithm not accepted"),
    (jwt.InvalidKeyError, "algorithm", "token algorithm not accepted"),
)


def _describe(exc: jwt.PyJWTError) -> tuple[str, str]:
    return next(
        ((reason, text) for kind, reason, text in _FAILURES if isinstance(exc, kind)),
        ("malformed", "token is malformed"),
    )
