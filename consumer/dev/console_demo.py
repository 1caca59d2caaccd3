"""`vidgen demo --api`: the demo's embedded broker and S3 server (unless the environment names others), a worker with
the tiny model, a template worker beside it (the template pool: what "allow a template video" falls back to) and the
job API with its web console, all kept running until Ctrl-C (or SIGTERM).

It prints (stdout) the console's URL, a ready-made API key for the tenant `demo-shop`, so a person can open the
console and sign in at once, and an `export ...` line that attaches more workers (`vidgen run`) or the client
commands (`vidgen submit`, `watch`, `cancel`) in another terminal to the embedded services. The console's form starts
with light values a CPU renders in seconds (`DEMO_FORM`). The key, the API's id key and its view live in a temporary
folder that is removed on exit: nothing of the demo outlives it.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import signal
import sys
import tempfile
from pathlib import Path

from aiokafka.errors import KafkaError

from consumer.api.api_settings import ApiSettings, FormField
from consumer.api.auth.api_keys import create_key
from consumer.api.wiring import serve as serve_api
from consumer.dev.demo import embedded_services
from consumer.errors import VidgenError
from consumer.settings import Settings
from consumer.start_failures import Listener, explain
from consumer.worker.wiring import serve as serve_worker

__all__ = ["DEMO_FORM", "DEMO_TENANT", "run_console_demo"]

DEMO_TENANT = "demo-shop"
DEMO_FORM: dict[FormField, int | float] = {"width": 256, "height": 256, "num_frames": 9, "num_inference_steps": 4}
"""The console form's starting values in the demo: the tiny model rendered them in 14 s on a busy 2-core CPU where the
contract's defaults (512x512, 25 frames, 30 steps) took 204 s."""


def run_console_demo(settings: Settings, listener: Listener) -> int:
    """Serve on `listener` until interrupted. Exit 0 after a clean stop, 1 when something could not start or stopped
    on its own (one line saying what, and the fix)."""
    with embedded_services(settings) as stack, tempfile.TemporaryDirectory(prefix="vidgen-console-") as folder:
        api = ApiSettings(
            host=listener.host,
            port=listener.port,
            operator_port=0,  # probes and metrics on a free port: nothing to collide with
            id_key=secrets.token_urlsafe(32),
            keys_file=str(Path(folder) / "api-keys"),
            state_path=str(Path(folder) / "view.sqlite3"),
            console_defaults=DEMO_FORM,
        )
        key = create_key(Path(folder) / "api-keys", DEMO_TENANT)
        try:
            return asyncio.run(_serve(stack.settings, api, key, stack.attach, listener))
        except (VidgenError, KafkaError, OSError) as exc:
            _say(explain(exc, bootstrap_servers=stack.settings.kafka_bootstrap_servers, listener=listener))
            return 1


async def _serve(settings: Settings, api: ApiSettings, key: str, attach: dict[str, str], listener: Listener) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listening: asyncio.Future[int] = loop.create_future()
    template = settings.template_pool().model_copy(update={"http_port": 0})  # its probes beside the first worker's
    tasks = {
        "worker": asyncio.create_task(serve_worker(settings, stop)),
        "template worker": asyncio.create_task(serve_worker(template, stop)),
        "job API": asyncio.create_task(serve_api(api, settings, stop, on_port=listening.set_result)),
    }
    await asyncio.wait([listening, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
    if listening.done():
        _say(
            f"worker (tiny model), template worker and job API running; open the console and sign in with the key "
            f"for {DEMO_TENANT}"
        )
        sys.stdout.write(f"console: http://127.0.0.1:{listening.result()}/\napi key: {key}\n")
        if attach:
            _say("in another terminal, this attaches `vidgen run` (more workers) and `vidgen submit` to the demo:")
            sys.stdout.write("export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in attach.items()))
            sys.stdout.write("\n")
        sys.stdout.flush()
        _say("Ctrl-C stops everything")
    await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
    stop.set()  # one stopped on its own (or Ctrl-C stopped all): the others follow
    outcomes = await asyncio.gather(*tasks.values(), return_exceptions=True)
    for name, outcome in zip(tasks, outcomes, strict=True):
        if isinstance(outcome, VidgenError | KafkaError | OSError):
            why = explain(outcome, bootstrap_servers=settings.kafka_bootstrap_servers, listener=listener)
            _say(f"the {name} stopped: {why}")
        elif isinstance(outcome, BaseException):
            _say(f"the {name} stopped: {outcome!r}")
    _say("stopped; everything shut down")
    return 0 if all(outcome == 0 for outcome in outcomes) else 1


def _say(message: str) -> None:
    sys.stderr.write(f"vidgen demo --api: {message}\n")
