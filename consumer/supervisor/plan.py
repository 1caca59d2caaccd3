"""Which workers a node runs, and the environment each one starts with (pure: no processes, no CUDA).

`--gpus` takes `all` (every GPU the supervisor sees), a count `N` (the first N) or a list of indexes `0,2,5`.
Indexes count the GPUs the supervisor sees: when its own `CUDA_VISIBLE_DEVICES` narrows them, index 1 is that
list's second entry, and that entry (a number or a UUID) is what the child gets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consumer.errors import InvalidNodeLayout
from consumer.settings import Settings

__all__ = ["ChildPlan", "child_environment", "parse_gpus", "plan_children", "select_devices", "visible_devices"]

_SPEC_HELP = "--gpus takes `all`, a count such as 2, or a list of GPU indexes such as 0,2,5"
_COUNT = re.compile(r"[1-9][0-9]{0,3}")
_INDEXES = re.compile(r"[0-9]{1,4}(,[0-9]{1,4})+")
# Children answer only the supervisor, which serves the node's probes and metrics.
_CHILD_HTTP_HOST = "127.0.0.1"


def parse_gpus(spec: str) -> int | tuple[int, ...] | None:
    """`all` -> None, `N` -> N, `0,2,5` -> (0, 2, 5). A single number is a count: `--gpus 1` is one GPU (to
    pick one GPU by index, narrow the supervisor's own CUDA_VISIBLE_DEVICES and ask for 1)."""
    text = "".join(spec.split()).lower()
    if text == "all":
        return None
    if _COUNT.fullmatch(text):
        return int(text)
    if _INDEXES.fullmatch(text):
        indexes = tuple(int(part) for part in text.split(","))
        if len(set(indexes)) != len(indexes):
            raise InvalidNodeLayout("--gpus names a GPU twice; each GPU runs one worker")
        return indexes
    raise InvalidNodeLayout(_SPEC_HELP)  # the argument itself is not repeated: it may be anything


def visible_devices(mask: str | None, count: int) -> tuple[str, ...]:
    """The CUDA_VISIBLE_DEVICES value of each GPU the supervisor sees, given its own mask (if any) and the
    number of devices CUDA reports. CUDA stops at the first invalid mask entry, so `count` can cut the list."""
    if mask is None:
        return tuple(str(index) for index in range(count))
    return tuple(part.strip() for part in mask.split(",") if part.strip())[:count]


def select_devices(
    request: int | tuple[int, ...] | None, *, device: str, visible: Sequence[str]
) -> tuple[str | None, ...]:
    """One entry per child: the CUDA_VISIBLE_DEVICES value it gets, or None for a CPU child
    (`VIDGEN_DEVICE=cpu`, where `--gpus N` means N CPU workers and `visible` is not consulted)."""
    if device == "cpu":
        if not isinstance(request, int):
            raise InvalidNodeLayout("with VIDGEN_DEVICE=cpu, --gpus takes a count of CPU workers, such as 2")
        return (None,) * request
    if not visible:
        raise InvalidNodeLayout(
            "no GPU is visible to the supervisor; set VIDGEN_DEVICE=cpu and --gpus N for CPU workers"
        )
    if request is None:
        return tuple(visible)
    if isinstance(request, int):
        if request > len(visible):
            raise InvalidNodeLayout(f"--gpus {request} asks for more GPUs than the {len(visible)} visible")
        return tuple(visible[:request])
    missing = [index for index in request if index >= len(visible)]
    if missing:
        raise InvalidNodeLayout(f"--gpus names GPU {missing[0]}, but only indexes 0-{len(visible) - 1} are visible")
    return tuple(visible[index] for index in request)


@dataclass(frozen=True)
class ChildPlan:
    """One worker slot of the node. A restarted child keeps its slot's ids, so with static membership it
    rejoins the group as the same member and gets its partitions back without a rebalance."""

    slot: int
    gpu: str | None
    worker_id: str
    group_instance_id: str | None

    @property
    def labels(self) -> dict[str, str]:
        """Labels that tell this child's metrics from its siblings'."""
        return {"worker": str(self.slot)} | ({"gpu": self.gpu} if self.gpu is not None else {})

    def describe(self) -> str:
        return f"worker {self.slot}" + (f" (GPU {self.gpu})" if self.gpu is not None else " (CPU)")


def plan_children(settings: Settings, devices: Sequence[str | None]) -> tuple[ChildPlan, ...]:
    instance = settings.group_instance_id
    return tuple(
        ChildPlan(
            slot=slot,
            gpu=gpu,
            worker_id=f"{settings.worker_id}-{slot}",
            group_instance_id=f"{instance}-{slot}" if instance else None,
        )
        for slot, gpu in enumerate(devices)
    )


def child_environment(
    environ: Mapping[str, str], settings: Settings, plan: ChildPlan, *, http_port: int
) -> dict[str, str]:
    """The child's environment: the supervisor's own (credentials chain, OTEL_*, PATH...) with every `VIDGEN_*`
    replaced by the validated settings, then the child's ids, its loopback HTTP port and its GPU.
    It holds secrets (the settings reveal them for the child): never log it."""
    environment = {name: value for name, value in environ.items() if not name.startswith("VIDGEN_")}
    environment.update(settings.as_environment())
    environment.update(
        {
            "VIDGEN_WORKER_ID": plan.worker_id,
            "VIDGEN_HTTP_HOST": _CHILD_HTTP_HOST,
            "VIDGEN_HTTP_PORT": str(http_port),
        }
    )
    if plan.group_instance_id is not None:
        environment["VIDGEN_GROUP_INSTANCE_ID"] = plan.group_instance_id
    if plan.gpu is not None:
        if "CUDA_VISIBLE_DEVICES" not in environ:
            # Indexes then mean what `nvidia-smi` shows; under a mask they keep the supervisor's own order.
            environment.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        environment["CUDA_VISIBLE_DEVICES"] = plan.gpu
    return environment
