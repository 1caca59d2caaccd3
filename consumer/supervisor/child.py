"""One child worker's life: start `python -m consumer run`, read its readiness, restart it when it dies (with
the restart policy's backoff), drain it with SIGTERM when the node stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from consumer.supervisor.node_metrics import ChildMetrics
from consumer.supervisor.options import SupervisorOptions
from consumer.supervisor.plan import ChildPlan
from consumer.supervisor.restarts import ChildExit, GiveUp, RestartHistory, after_exit, describe_status

__all__ = ["Child", "ChildOutcome", "ChildState"]

log = logging.getLogger(__name__)

ChildState = Literal["starting", "ready", "not ready", "restarting", "stopping", "exited", "failed"]

_WORKER_COMMAND = (sys.executable, "-m", "consumer", "run")
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=2.0)
# A drained worker exits 0. One stopped before its signal handlers were installed (still importing, so it held no
# work and no partitions) ends by the signal itself; that is a clean stop too.
_CLEAN_STOPS = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


@dataclass(frozen=True)
class ChildOutcome:
    clean: bool
    failure: str | None = None  # set when the node must stop: the child never manages to start


class Child:
    def __init__(
        self,
        plan: ChildPlan,
        *,
        environment: Callable[[int], dict[str, str]],
        options: SupervisorOptions,
        drain_deadline_s: float,
        http: aiohttp.ClientSession,
    ) -> None:
        self.plan = plan
        self._environment = environment  # the child's environment for an HTTP port
        self._options = options
        self._drain_deadline_s = drain_deadline_s
        self._http = http
        self.state: ChildState = "starting"
        self.history = RestartHistory()
        self.process: asyncio.subprocess.Process | None = None
        self.port: int | None = None
        self.checks: dict[str, Any] = {}

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def running(self) -> asyncio.subprocess.Process | None:
        """The child's process while it runs."""
        return self.process if self.process is not None and self.process.returncode is None else None

    def view(self) -> dict[str, Any]:
        """This child in the node's /readyz body."""
        running = self.running
        return {
            "state": self.state,
            "worker_id": self.plan.worker_id,
            "gpu": self.plan.gpu,
            "pid": running.pid if running else None,
            "http_port": self.port if running else None,
            "restarts": self.history.restarts,
            "checks": self.checks,
        }

    def metrics(self) -> ChildMetrics:
        return ChildMetrics(labels=self.plan.labels, ready=self.ready, restarts=self.history.restarts)

    async def metrics_page(self) -> str | None:
        """The child's own /metrics text, or None while it does not answer."""
        if self.port is None or self.running is None:
            return None
        try:
            async with self._http.get(f"http://127.0.0.1:{self.port}/metrics", timeout=_HTTP_TIMEOUT) as response:
                return await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def run(self, stop: asyncio.Event) -> ChildOutcome:
        """Keep the child running until `stop` (then drain it) or until it keeps dying at start-up."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                ended = await self._run_once(stopping)
                if stopping.done():
                    return self._stopped(ended.status)
                self.history, decision = after_exit(self._options.restarts, self.history, ended)
                if isinstance(decision, GiveUp):
                    self.state = "failed"
                    return ChildOutcome(clean=False, failure=f"{self.plan.describe()} {decision.reason}")
                log.warning(
                    "%s (pid %s) %s after %.1f s: restarting it in %.1f s",
                    self.plan.describe(),
                    self.process.pid if self.process else "?",
                    describe_status(ended.status),
                    ended.uptime_s,
                    decision.delay_s,
                )
                self.state = "restarting"
                await asyncio.wait([stopping], timeout=decision.delay_s)
                if stopping.done():
                    self.state = "exited"
                    return ChildOutcome(clean=True)
        finally:
            stopping.cancel()
            if (process := self.running) is not None:  # cancelled or failed: leave no orphan
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def _run_once(self, stopping: asyncio.Task[Any]) -> ChildExit:
        self.port = self._options.child_port(self.plan.slot) or _free_loopback_port()
        self.state = "starting"
        self.checks = {}
        self.process = await asyncio.create_subprocess_exec(*_WORKER_COMMAND, env=self._environment(self.port))
        log.info("%s started: pid %d, HTTP port %d", self.plan.describe(), self.process.pid, self.port)
        started = time.monotonic()
        was_ready = False
        exited = asyncio.create_task(self.process.wait())
        try:
            while not exited.done():
                await asyncio.wait(
                    [exited, stopping], timeout=self._options.probe_interval_s, return_when=asyncio.FIRST_COMPLETED
                )
                if exited.done():
                    break
                if stopping.done():
                    await self._drain(self.process, exited)
                elif await self._probe(was_ready) and not was_ready:
                    was_ready = True
                    log.info("%s ready after %.1f s", self.plan.describe(), time.monotonic() - started)
        finally:
            exited.cancel()
        return ChildExit(status=exited.result(), uptime_s=time.monotonic() - started, was_ready=was_ready)

    async def _probe(self, was_ready: bool) -> bool:
        """Read the child's /readyz; the state says what it answered."""
        try:
            async with self._http.get(f"http://127.0.0.1:{self.port}/readyz", timeout=_HTTP_TIMEOUT) as response:
                body = await response.json()
                ready = response.status == 200
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self.checks = {"http": "not answering"} if was_ready else {}
            self.state = "not ready" if was_ready else "starting"
            return False
        self.checks = body.get("checks", {}) if isinstance(body, dict) else {}
        self.state = "ready" if ready else ("not ready" if was_ready else "starting")
        return ready

    async def _drain(self, process: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> None:
        self.state = "stopping"
        with contextlib.suppress(ProcessLookupError):  # it may have exited since the last look
            process.send_signal(signal.SIGTERM)
        done, _ = await asyncio.wait([exited], timeout=self._drain_deadline_s)
        if not done:
            log.error(
                "%s did not drain within %.0f s: killing it (its uncommitted work will be redelivered)",
                self.plan.describe(),
                self._drain_deadline_s,
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await exited

    def _stopped(self, status: int) -> ChildOutcome:
        self.state = "exited"
        clean = status in _CLEAN_STOPS
        log.log(
            logging.INFO if clean else logging.ERROR, "%s stopped: %s", self.plan.describe(), describe_status(status)
        )
        return ChildOutcome(clean=clean)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
