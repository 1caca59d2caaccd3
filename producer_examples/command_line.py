"""What the example command lines share: an argument parser that raises `UsageError` instead of exiting, so each
command answers a bad command line with one line and its own exit code."""

from __future__ import annotations

import argparse
from typing import NoReturn

from consumer.errors import UsageError

__all__ = ["StrictArgumentParser"]


class StrictArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
