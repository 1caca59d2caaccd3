"""The NVML memory probe reads the worker's own GPU. NVML numbers every GPU of the machine and ignores
CUDA_VISIBLE_DEVICES, which `vidgen run --gpus` sets per worker: under `CUDA_VISIBLE_DEVICES=1` the worker's `cuda:0`
is the machine's second GPU, so the probe must find its device by UUID, not by index. NVML and torch's device
properties are stand-ins here (no GPU on this tier)."""

from __future__ import annotations

import sys
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from consumer.memory.probe import CudaProbe

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared

_GiB = 1 << 30


class _FakeNvml:
    """pynvml over the machine's GPUs (NVML index = position in `gpus`), each with its own free memory; `mig`: the UUIDs
    are MIG instances'."""

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: list[tuple[uuid.UUID, int]], *, mig: bool = False) -> None:
        self._gpus = gpus
        self._prefix = "MIG-" if mig else "GPU-"

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        pass

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802 - pynvml's names
        return index

    def nvmlDeviceGetHandleByUUID(self, text: bytes | str) -> int:  # noqa: N802 - pynvml's names
        text = text.decode() if isinstance(text, bytes) else text
        for index, (gpu_uuid, _) in enumerate(self._gpus):
            if text == f"{self._prefix}{gpu_uuid}":
                return index
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:  # noqa: N802 - pynvml's names
        free = self._gpus[handle][1]
        return SimpleNamespace(free=free, total=80 * _GiB, used=80 * _GiB - free)


@pytest.fixture
def gpus() -> list[tuple[uuid.UUID, int]]:
    return [(uuid.uuid4(), 10 * _GiB), (uuid.uuid4(), 70 * _GiB)]


def _visible(monkeypatch: pytest.MonkeyPatch, gpus: list[tuple[uuid.UUID, int]], nvml: _FakeNvml, *, only: int) -> None:
    """This process sees only the machine's GPU `only`, as its `cuda:0` (what CUDA_VISIBLE_DEVICES=only does)."""
    monkeypatch.setitem(sys.modules, "pynvml", nvml)

    def properties(device: int) -> Any:
        assert device == 0, "the worker's only visible GPU is cuda:0"
        return SimpleNamespace(uuid=gpus[only][0], name="H200")

    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)


def test_nvml_probe_reads_the_gpu_cuda_visible_devices_gave_the_worker(
    monkeypatch: pytest.MonkeyPatch, gpus: list[tuple[uuid.UUID, int]]
) -> None:
    _visible(monkeypatch, gpus, _FakeNvml(gpus), only=1)

    reading = CudaProbe(0, backend="nvml").read()

    assert reading.free_bytes == 70 * _GiB  # the second GPU's, not NVML index 0's 10 GiB
    assert reading.device == "cuda:0"


def test_nvml_probe_finds_a_mig_instance_by_its_uuid(
    monkeypatch: pytest.MonkeyPatch, gpus: list[tuple[uuid.UUID, int]]
) -> None:
    _visible(monkeypatch, gpus, _FakeNvml(gpus, mig=True), only=1)

    assert CudaProbe(0, backend="nvml").read().free_bytes == 70 * _GiB
