"""`vidgen run --gpus all|N|0,2,5`: one worker process per GPU on this node, kept running and drained together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Callable, Mapping, Sequence

import aiohttp

from consumer.errors import InvalidNodeLayout
from consumer.settings import Settings
from consumer.supervisor.child import Child, ChildOutcome
from consumer.supervisor.node_http import start_node_http
from consumer.supervisor.options import SupervisorOptions
from consumer.supervisor.plan import (
    ChildPlan,
    child_environment,
    parse_gpus,
    plan_children,
    select_devices,
    visible_devices,
)

__all__ = ["cuda_device_count", "run_supervisor"]

log = logging.getLogger(__name__)


def cuda_device_count() -> int:
    """GPUs CUDA shows this process (its CUDA_VISIBLE_DEVICES applies). Creates no CUDA context."""
    import torch  # only `--gpus` on a GPU node needs it

    return torch.cuda.device_count()


def run_supervisor(
    settings: Settings,
    gpus: str,
    *,
    environ: Mapping[str, str],
    options: SupervisorOptions | None = None,
    gpu_count: Callable[[], int] = cuda_device_count,
) -> int:
    """Run one worker per selected GPU until SIGTERM/SIGINT. `environ` is the supervisor's process environment,
    which the children inherit (with the settings in place of its `VIDGEN_*`). Exit status: 0 when every child
    drained and exited 0, 1 when one kept dying at start-up or did not stop cleanly, 2 for a selection or port
    layout this node cannot run."""
    options = options or SupervisorOptions()
    try:
        plans = _plan(settings, gpus, environ, options, gpu_count)
    except InvalidNodeLayout as exc:
        log.critical("cannot start the node's workers: %s", exc.message)
        return 2
    return asyncio.run(_supervise(settings, plans, environ, options))


def _plan(
    settings: Settings, gpus: str, environ: Mapping[str, str], options: SupervisorOptions, gpu_count: Callable[[], int]
) -> tuple[ChildPlan, ...]:
    request = parse_gpus(gpus)
    visible = () if settings.device == "cpu" else visible_devices(environ.get("CUDA_VISIBLE_DEVICES"), gpu_count())
    plans = plan_children(settings, select_devices(request, device=settings.device, visible=visible))
    fixed = {port for plan in plans if (port := options.child_port(plan.slot)) is not None}
    if fixed and (settings.http_port in fixed or max(fixed) > 65_535):
        raise InvalidNodeLayout(
            f"the child ports {min(fixed)}-{max(fixed)} must be valid ports that leave the node's VIDGEN_HTTP_PORT "
            f"{settings.http_port} free",
            code="invalid_port_layout",
        )
    return plans


async def _supervise(
    settings: Settings, plans: Sequence[ChildPlan], environ: Mapping[str, str], options: SupervisorOptions
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _request_stop, stop, signum)
    async with aiohttp.ClientSession() as http:
        children = [
            Child(
                plan,
                environment=functools.partial(_environment, environ, settings, plan),
                options=options,
                drain_deadline_s=settings.shutdown_grace_s + options.drain_margin_s,
                http=http,
            )
            for plan in plans
        ]
        try:
            node = await start_node_http(host=settings.http_host, port=settings.http_port, children=children)
        except OSError as exc:
            log.critical("cannot serve the node's probes on %s:%d: %s", settings.http_host, settings.http_port, exc)
            return 1
        log.info(
            "supervising %d workers; the node's probes and metrics are on port %d", len(children), settings.http_port
        )
        try:
            outcomes = await _run_children(children, stop)
        finally:
            await node.cleanup()
    if any(outcome.failure for outcome in outcomes):
        log.error("exiting 1: a worker never managed to start")
        return 1
    unclean = [child.plan.describe() for child, outcome in zip(children, outcomes, strict=True) if not outcome.clean]
    if unclean:
        log.error("exiting 1: %s did not stop cleanly", ", ".join(unclean))
        return 1
    log.info("every worker drained and exited 0")
    return 0


def _environment(environ: Mapping[str, str], settings: Settings, plan: ChildPlan, port: int) -> dict[str, str]:
    return child_environment(environ, settings, plan, http_port=port)


async def _run_children(children: Sequence[Child], stop: asyncio.Event) -> list[ChildOutcome]:
    """Until every child has stopped. A child that never manages to start stops all the others."""
    tasks = [asyncio.create_task(child.run(stop)) for child in children]
    try:
        pending: set[asyncio.Task[ChildOutcome]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                failure = task.result().failure
                if failure is not None:
                    log.critical("%s; its log lines above say why. Stopping every worker of the node.", failure)
                    stop.set()
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()  # only those still running after an error: each kills its process on the way out
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


def _request_stop(stop: asyncio.Event, signum: int) -> None:
    log.info("%s received: draining every worker", signal.Signals(signum).name)
    stop.set()
