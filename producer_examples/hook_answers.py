"""The product hook's answers to a webhook: the 202's body (accepted, and how) and the 422 for a body that is not a
product, in the job API's error shape (`consumer.api.routes.error_answers`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from consumer.api.routes.error_answers import error_response

__all__ = ["accepted", "invalid_payload", "routed"]


def accepted(request_id: str, *, duplicate: bool, note: str | None) -> dict[str, Any]:
    """A 202's body: the request id, whether it repeats one already published, and whether it was degraded (to the
    template pool, or answered with an earlier video: `similar_to`), with its `degraded_reason`. `note` is how it
    was routed (`routed`); a duplicate is answered as its first delivery was."""
    answer: dict[str, Any] = {"request_id": request_id, "duplicate": duplicate, "degraded": note is not None}
    if note is not None:
        reason, _, similar_to = note.partition(" ")
        answer["degraded_reason"] = reason
        if similar_to:
            answer["similar_to"] = similar_to
    return answer


def routed(reason: str | None, similar_to: str | None = None) -> str | None:
    """What the hook remembers of a published request (its `RecentKeys` note): its degraded reason, and the earlier
    request whose video answered it (request ids have no spaces)."""
    if reason is None:
        return None
    return reason if similar_to is None else f"{reason} {similar_to}"


def invalid_payload(exc: ValidationError) -> web.Response:
    """422 for a body that is not a product: every problem in the message (`title: Field required; ...`), the first
    one's field in `field`, never echoing what was sent (the job API's rule). The code: `invalid_json`,
    `missing_field`, `invalid_field` (the worker's text rule) or `invalid_payload`."""
    problems = exc.errors(include_url=False, include_input=False)
    fields = [".".join(str(part) for part in problem["loc"]) for problem in problems]
    message = "; ".join(
        f"{field}: {p['msg']}" if field else p["msg"] for field, p in zip(fields, problems, strict=True)
    )
    codes = {"json_invalid": "invalid_json", "missing": "missing_field", "invalid_field": "invalid_field"}
    return error_response(422, codes.get(problems[0]["type"], "invalid_payload"), message, field=fields[0] or None)
