"""`vidgen demo --api`: the demo's embedded broker and S3 server (unless the environment names others), a worker with
the tiny model and the job API with its web console, all kept running until Ctrl-C (or SIGTERM).

It prints the console's URL and a ready-made API key for the tenant `demo-shop` (stdout, two lines), so a person can
open the console and sign in at once. The key, the API's id key and its view live in a temporary folder that is
removed on exit: nothing of the demo outlives it.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from consumer.api.api_settings import ApiSettings
from consumer.api.auth.api_keys import create_key
from consumer.api.wiring import serve as serve_api
from consumer.dev.demo import embedded_services
from consumer.settings import Settings
from consumer.worker.wiring import serve as serve_worker

__all__ = ["DEMO_TENANT", "run_console_demo"]

DEMO_TENANT = "demo-shop"


def run_console_demo(settings: Settings, *, port: int) -> int:
    """Serve until interrupted. Exit 0 after a clean stop, 1 when the worker or the API stopped on its own."""
    with embedded_services(settings) as effective, tempfile.TemporaryDirectory(prefix="vidgen-console-") as folder:
        api = ApiSettings(
            host="127.0.0.1",  # a demo answers this machine only
            port=port,
            operator_port=0,  # probes and metrics on a free port: nothing to collide with
            id_key=secrets.token_urlsafe(32),
            keys_file=str(Path(folder) / "api-keys"),
            state_path=str(Path(folder) / "view.sqlite3"),
        )
        key = create_key(Path(folder) / "api-keys", DEMO_TENANT)
        return asyncio.run(_serve(effective, api, key))


async def _serve(settings: Settings, api: ApiSettings, key: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listening: asyncio.Future[int] = loop.create_future()
    worker = asyncio.create_task(serve_worker(settings, stop))
    server = asyncio.create_task(serve_api(api, settings, stop, on_port=listening.set_result))
    await asyncio.wait([listening, worker, server], return_when=asyncio.FIRST_COMPLETED)
    if listening.done():
        _say(f"worker (tiny model) and job API running; open the console and sign in with the key for {DEMO_TENANT}")
        sys.stdout.write(f"console: http://127.0.0.1:{listening.result()}/\napi key: {key}\n")
        sys.stdout.flush()
        _say("Ctrl-C stops everything")
    await asyncio.wait([worker, server], return_when=asyncio.FIRST_COMPLETED)
    stop.set()  # one stopped on its own (or Ctrl-C stopped both): the other follows
    outcomes = await asyncio.gather(worker, server, return_exceptions=True)
    for name, outcome in zip(("worker", "job API"), outcomes, strict=True):
        if isinstance(outcome, BaseException):
            _say(f"the {name} stopped: {outcome!r}")  # e.g. the port is taken: try --port 0
    _say("stopped; everything shut down")
    return 0 if all(outcome == 0 for outcome in outcomes) else 1


def _say(message: str) -> None:
    sys.stderr.write(f"vidgen demo --api: {message}\n")
