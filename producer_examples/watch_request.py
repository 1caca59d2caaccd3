"""Follow one request until its result: `vidgen watch REQUEST_ID`.

It first looks up the result that already exists (a finished request is answered at once: the watcher reads the
results partition the request id hashes to, see `producer_examples.waiting`), then follows a running one with a
progress bar from the progress topic until its result arrives. Prints the result event as JSON. Connection settings
come from the worker's `VIDGEN_*` variables.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

from consumer.settings import Settings
from producer_examples.command_line import EXIT_CODES, StrictArgumentParser, run_command
from producer_examples.waiting import ResultWatcher, report_result

__all__ = ["watch_main", "watch_parser"]


def watch_parser(prog: str = "vidgen watch") -> argparse.ArgumentParser:
    """`vidgen watch`'s arguments (the CLI reference is generated from them)."""
    parser = StrictArgumentParser(
        prog=prog,
        description="Answer with one request's result: at once when it exists, else following its progress until "
        "it arrives.",
        epilog=f"Exit codes: 0 completed, 1 failed or rejected, 2 no result before --timeout, {EXIT_CODES}.",
    )
    parser.add_argument("request_id", metavar="REQUEST_ID", help="the id `vidgen submit` printed")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the result")
    return parser


def watch_main(
    argv: list[str] | None = None,
    *,
    settings: Settings | None = None,
    prog: str = "vidgen watch",
    on_positioned: Callable[[], None] | None = None,
) -> int:
    """`vidgen watch REQUEST_ID`. `on_positioned` is told once the watcher is positioned: a result that existed by
    then is found, and what is published after that is seen."""

    async def follow(args: argparse.Namespace, settings: Settings) -> int:
        watcher = ResultWatcher(settings, args.request_id, progress_topic=settings.progress_topic, existing=True)
        try:
            await watcher.start()
            if on_positioned is not None:
                on_positioned()
            return await report_result(watcher, args.request_id, timeout_s=args.timeout, prog=prog)
        finally:
            await watcher.stop()

    parse = functools.partial(watch_parser(prog).parse_args, argv)
    return run_command(prog, parse, follow, settings=settings, failing="cannot follow")
