"""`POST /v1/videos/{id}/links`, and the `token` that stands in for the credential on `GET /v1/videos/{id}/content`
(the token itself: `consumer.api.auth.link_signing`).

A browser's `<video>` and `<img>` cannot send `Authorization`, and a credential must never go in a URL, so a client
asks for links first (with its credential) and gives those to the elements. A token opens only the content route of
its own job, for a few minutes; anywhere else it is an unknown query parameter (422) and authenticates nothing.
A link lives no longer than the credential that asked for it: an API key's link stops working (401) within a
second or two of the key's line leaving the keys file, a JWT's link expires with the token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from consumer.api.auth.authenticator import Authenticator, Caller
from consumer.api.auth.link_signing import sign_link, verify_link
from consumer.api.routes.videos import CALLER, Handlers
from consumer.errors import ApiFailure, AuthFailure
from schemas.links import ContentLinks

__all__ = ["CONTENT_ROUTE", "LinkIssuer"]

CONTENT_ROUTE = "/v1/videos/{id}/content"


class LinkIssuer:
    def __init__(self, handlers: Handlers, authenticator: Authenticator) -> None:
        self._handlers = handlers
        self._authenticator = authenticator
        self._key = handlers.api.id_key.get_secret_value().encode("utf-8")

    async def issue(self, request: web.Request) -> web.Response:
        """`POST /v1/videos/{id}/links`: 200 and the links once the job is completed; 404 and 409 as content."""
        caller = request[CALLER]
        tenant = caller.tenant_id
        state = await self._handlers.store.get(tenant, request.match_info["id"])
        if state is None:
            raise ApiFailure(404, "not_found", "no such video job")
        if state.status != "completed":
            raise ApiFailure(409, "not_completed", f"the job is {state.status}, not completed")
        token, expires = sign_link(
            self._key,
            tenant_id=tenant,
            job_id=state.id,
            now=self._handlers.clock().timestamp(),
            key_id=caller.key_id,
            expires_by=caller.expires_at,
        )
        path = CONTENT_ROUTE.format(id=state.id)
        body = ContentLinks(
            video_url=f"{path}?{urlencode({'token': token})}",
            poster_url=f"{path}?{urlencode({'variant': 'thumbnail', 'token': token})}",
            expires_at=datetime.fromtimestamp(expires, UTC),
        )
        return web.json_response(text=body.model_dump_json(), headers={"Cache-Control": "no-store"})

    async def caller(self, request: web.Request) -> Caller | None:
        """Who a content link speaks for: None without a token or off the content route (the bearer decides),
        401 when the token is not one of ours for this job, has expired or its API key was revoked."""
        token = request.query.get("token")
        resource = request.match_info.route.resource
        if token is None or request.method != "GET" or resource is None or resource.canonical != CONTENT_ROUTE:
            return None
        now = self._handlers.clock().timestamp()
        grant = verify_link(self._key, token, job_id=request.match_info["id"], now=now)
        caller = None if grant is None else Caller(tenant_id=grant.tenant_id, kind="content_link", key_id=grant.key_id)
        if caller is None or not await self._authenticator.still_valid(caller):
            raise AuthFailure("content_link", "this content link is not valid or has expired; ask for a new one")
        return caller
