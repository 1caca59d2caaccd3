"""`POST /v1/videos/{id}/links`, and the `token` that stands in for the credential on `GET /v1/videos/{id}/content`
(the token itself: `consumer.api.auth.link_signing`).

A browser's `<video>` and `<img>` cannot send `Authorization`, and a credential must never go in a URL, so a client
asks for links first (with its credential) and gives those to the elements. A token opens only the content route of
its own job, for a few minutes; anywhere else it is an unknown query parameter (422) and authenticates nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from consumer.api.auth.authenticator import Caller
from consumer.api.auth.link_signing import sign_link, verify_link
from consumer.api.routes.videos import CALLER, Handlers
from consumer.errors import ApiFailure, AuthFailure
from schemas.links import ContentLinks

__all__ = ["CONTENT_ROUTE", "LinkIssuer"]

CONTENT_ROUTE = "/v1/videos/{id}/content"


class LinkIssuer:
    def __init__(self, handlers: Handlers) -> None:
        self._handlers = handlers
        self._key = handlers.api.id_key.get_secret_value().encode("utf-8")

    async def issue(self, request: web.Request) -> web.Response:
        """`POST /v1/videos/{id}/links`: 200 and the links once the job is completed; 404 and 409 as content."""
        tenant = request[CALLER].tenant_id
        state = await self._handlers.store.get(tenant, request.match_info["id"])
        if state is None:
            raise ApiFailure(404, "not_found", "no such video job")
        if state.status != "completed":
            raise ApiFailure(409, "not_completed", f"the job is {state.status}, not completed")
        token, expires = sign_link(self._key, tenant_id=tenant, job_id=state.id, now=self._handlers.clock().timestamp())
        path = CONTENT_ROUTE.format(id=state.id)
        body = ContentLinks(
            video_url=f"{path}?{urlencode({'token': token})}",
            poster_url=f"{path}?{urlencode({'variant': 'poster', 'token': token})}",
            expires_at=datetime.fromtimestamp(expires, UTC),
        )
        return web.json_response(text=body.model_dump_json(), headers={"Cache-Control": "no-store"})

    def caller(self, request: web.Request) -> Caller | None:
        """Who a content link speaks for: None without a token or off the content route (the bearer decides),
        401 when the token is not one of ours for this job or has expired."""
        token = request.query.get("token")
        resource = request.match_info.route.resource
        if token is None or request.method != "GET" or resource is None or resource.canonical != CONTENT_ROUTE:
            return None
        now = self._handlers.clock().timestamp()
        tenant = verify_link(self._key, token, job_id=request.match_info["id"], now=now)
        if tenant is None:
            raise AuthFailure("content_link", "this content link is not valid or has expired; ask for a new one")
        return Caller(tenant_id=tenant, kind="content_link")
