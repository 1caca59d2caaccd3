"""What a JWT must say, given a token whose signature, expiry, issuer and audience the JOSE library verified.
Pure: the header and payload come in as dicts.

Only asymmetric algorithms are accepted: a shared-secret (HS*) token could be minted by anyone holding the
verification key, and `none` by anyone at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from consumer.core.intake import usable_id
from consumer.errors import ClaimError

__all__ = ["ASYMMETRIC_ALGORITHMS", "check_algorithms", "check_header", "tenant_from_claims"]

ASYMMETRIC_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def check_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    """The configured algorithms, each an asymmetric one (settings validation)."""
    chosen = tuple(algorithms)
    refused = [name for name in chosen if name not in ASYMMETRIC_ALGORITHMS]
    if refused or not chosen:
        raise ValueError(f"only asymmetric JWT algorithms are accepted: {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}")
    return chosen


def check_header(header: Mapping[str, Any], algorithms: Iterable[str]) -> str | None:
    """The token's key id (None when it names none), once its algorithm is one of `algorithms`."""
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in set(algorithms):
        raise ClaimError("token algorithm not accepted")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ClaimError("token key id is not a string")
    return kid


def tenant_from_claims(payload: Mapping[str, Any], claim: str) -> str:
    """The tenant the token speaks for: the `claim` claim, a well-formed tenant id."""
    tenant = usable_id(payload.get(claim), max_length=64)
    if tenant is None:
        raise ClaimError(f"token has no usable {claim} claim")
    return tenant
