"""Errors that stop a process before it serves anything: a worker that cannot start (memory mode, producer), a
node layout the supervisor refuses, a command line the CLI cannot run. Their codes are in the event contract's
error table (docs/event-contract.md) as `(start-up)` and `(CLI)`; `pool_mismatch` (`consumer.settings.pools`) too."""

from __future__ import annotations

from consumer.errors.root import VidgenError

__all__ = ["InvalidNodeLayout", "ModeUnsupported", "ProducerUnsupported", "UsageError"]


class ModeUnsupported(VidgenError):
    """The memory mode cannot be applied on this device (offload needs an accelerator)."""

    code = "memory_mode_unsupported"


class InvalidNodeLayout(VidgenError):
    """`vidgen run --gpus` asks for workers this node cannot run: GPUs it does not see, or child ports that clash
    with the node's own (`code` `invalid_port_layout`). The supervisor exits 2 before starting any worker."""

    code = "invalid_gpu_selection"


class ProducerUnsupported(VidgenError):
    """The brokers refuse a producer feature the settings ask for (the idempotent producer): the worker cannot
    start until the setting or the brokers change."""

    code = "producer_unsupported"


class UsageError(VidgenError):
    """A command line the CLI cannot run: a missing or malformed argument. Exit 64, never a traceback."""

    code = "usage"
