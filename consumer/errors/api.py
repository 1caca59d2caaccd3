"""Errors the job API answers over HTTP (`vidgen api`): never in a result event. `ApiFailure` carries its status
and code per answer; the pure rules of the API (JWT claims, pagination) raise their own kinds, which the handlers
turn into `ApiFailure`. Codes: the job API's error table (docs/job-api.md)."""

from __future__ import annotations

from collections.abc import Mapping

from consumer.errors.root import VidgenError

__all__ = ["ApiFailure", "AuthFailure", "ClaimError", "QueryError"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class ApiFailure(VidgenError):
    """An answer other than success: the HTTP status, a stable code, a message and the field at fault."""

    in_results = False

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code, field=field)
        self.status = status
        self.headers = dict(headers or {})

    @property
    def retriable(self) -> bool:  # type: ignore[override]  # per instance: 429 and 503 are worth retrying
        return self.status in (429, 503)


class AuthFailure(ApiFailure):
    """401 with the Bearer challenge. `reason` is a fixed label for the metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(401, "invalid_token", message, headers=_CHALLENGE)
        self.reason = reason


class ClaimError(VidgenError, ValueError):
    """The credential is not acceptable; the message says why without quoting it. Answered as `AuthFailure`.
    A `ValueError` too, as it always was."""

    code = "invalid_token"
    in_results = False


class QueryError(VidgenError, ValueError):
    """A list query the API cannot page (`limit`, `after`); `field` names the parameter. Answered 422. A
    `ValueError` too, as it always was."""

    code = "invalid_field"
    in_results = False

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)
        self.field: str = field


class BodyTimeout(VidgenError, TimeoutError):
    """What reading a request's body raises once its deadline has passed (the guard answers 408). A TimeoutError, so
    aiohttp's own draining of an unread body after the answer ends quietly on it. An HTTP answer, never a result
    event's error: its code is the instance's (`request_timeout`), as `ApiFailure`'s are."""

    retriable = True
    in_results = False
