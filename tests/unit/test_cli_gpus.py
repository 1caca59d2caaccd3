"""`vidgen run --gpus` is the supervisor's entry: a selection the node cannot run stops it before any worker starts,
with exit status 2 and the reason (not argparse's "unrecognized arguments")."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from consumer.cli import main


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`main` configures the root logger as an entry point does; put it back for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_run_gpus_with_indexes_on_a_cpu_node_exits_2_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIDGEN_DEVICE", "cpu")
    monkeypatch.setenv("VIDGEN_LOG_FORMAT", "text")

    assert main(["run", "--gpus", "0,2"]) == 2

    err = capsys.readouterr().err
    assert "cannot start the node's workers: with VIDGEN_DEVICE=cpu, --gpus takes a count of CPU workers" in err


def test_run_gpus_that_is_not_a_selection_exits_2_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIDGEN_DEVICE", "cpu")
    monkeypatch.setenv("VIDGEN_LOG_FORMAT", "text")

    assert main(["run", "--gpus", "x$(secret)"]) == 2

    err = capsys.readouterr().err
    assert "--gpus takes `all`, a count such as 2, or a list of GPU indexes" in err
    assert "secret" not in err
