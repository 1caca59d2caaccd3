"""The memory limit a CPU worker admits renders against: cgroup v2 `memory.max` or v1 `memory.limit_in_bytes`
(fake cgroup trees here), else total memory, and the budget left once the worker's own memory is counted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consumer.memory.probe import cpu_budget_bytes, memory_limit_bytes

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared

GIB = 1 << 30
TOTAL = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
V1_UNLIMITED = "9223372036854771712"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _proc(tmp_path: Path, cgroup: str) -> Path:
    return _tree(tmp_path / "proc", {"self/cgroup": cgroup})


@pytest.mark.parametrize(
    ("cgroup", "files", "expected"),
    [
        ("0::/\n", {"memory.max": "4294967296\n"}, 4 * GIB),  # v2, a container's own view
        ("0::/\n", {"memory.max": "max\n"}, TOTAL),
        (
            "0::/kubepods/pod1/ctr\n",
            {"kubepods/pod1/ctr/memory.max": "max\n", "kubepods/memory.max": "3221225472\n"},
            3 * GIB,
        ),
        ("0::/kubepods/pod1/ctr\n", {"memory.max": "2147483648\n"}, 2 * GIB),  # path of the host, view of the pod
        ("4:memory:/docker/abc\n0::/\n", {"memory/memory.limit_in_bytes": "1073741824\n"}, GIB),  # v1
        ("4:cpu,memory:/a\n", {"memory/a/memory.limit_in_bytes": "1610612736\n"}, 3 * GIB // 2),
        ("4:memory:/\n", {"memory/memory.limit_in_bytes": V1_UNLIMITED}, TOTAL),  # v1's "no limit"
        ("0::/\n", {"memory.max": str(TOTAL * 4)}, TOTAL),  # more than the machine has
        ("0::/\n", {}, TOTAL),  # no cgroup files at all
    ],
    ids=["v2", "v2-max", "v2-ancestor", "v2-walk-up", "v1", "v1-comounted", "v1-unlimited", "absurd", "none"],
)
def test_the_memory_limit_is_the_tightest_cgroup_limit_or_total_memory(
    tmp_path: Path, cgroup: str, files: dict[str, str], expected: int
) -> None:
    root = _tree(tmp_path / "cgroup", files)

    assert memory_limit_bytes(root, _proc(tmp_path, cgroup)) == expected


def test_without_proc_self_cgroup_the_limit_is_total_memory(tmp_path: Path) -> None:
    assert memory_limit_bytes(tmp_path, tmp_path / "no-proc") == TOTAL


def test_the_budget_is_the_limit_less_what_the_worker_holds_beyond_its_weights_and_the_reserve() -> None:
    budget = cpu_budget_bytes(4 * GIB, resident_bytes=GIB, weights_bytes=GIB // 4, reserved_bytes=GIB // 2)

    assert budget == 4 * GIB - 3 * GIB // 4 - GIB // 2
    assert cpu_budget_bytes(GIB, resident_bytes=2 * GIB, weights_bytes=0, reserved_bytes=0) == 1  # admits nothing
    assert cpu_budget_bytes(GIB, resident_bytes=0, weights_bytes=GIB, reserved_bytes=0) == GIB  # weights not resident
