"""The node's one /healthz, /readyz and /metrics, on the supervisor's VIDGEN_HTTP_PORT. The children listen on
loopback ports that only the supervisor reads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from consumer.supervisor.child import Child
from consumer.supervisor.node_metrics import merge_pages, render_page, supervisor_families

__all__ = ["start_node_http"]


async def start_node_http(*, host: str, port: int, children: Sequence[Child]) -> web.AppRunner:
    """Serve until the returned runner is cleaned up."""

    async def healthz(_: web.Request) -> web.Response:
        # The supervisor's loop answers; dead children are its job to restart, not a reason to restart the node.
        return web.json_response({"status": "ok", "workers": {str(c.plan.slot): c.state for c in children}})

    async def readyz(_: web.Request) -> web.Response:
        ready = sum(child.ready for child in children)
        body = {
            "status": "ready" if ready else "not ready",
            "ready_workers": ready,
            "workers": {str(child.plan.slot): child.view() for child in children},
        }
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        pages = await asyncio.gather(*(child.metrics_page() for child in children))
        families = merge_pages((child.plan.labels, page) for child, page in zip(children, pages, strict=True) if page)
        families += supervisor_families([child.metrics() for child in children])
        return web.Response(body=render_page(families), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
