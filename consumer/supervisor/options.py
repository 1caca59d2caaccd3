"""The supervisor's own knobs (pure). The CLI builds them from the settings; tests pass shorter ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.supervisor.restarts import RestartPolicy

__all__ = ["SupervisorOptions"]


@dataclass(frozen=True)
class SupervisorOptions:
    # 0: each child gets a free loopback port when it starts; else child k listens on child_port_base + k.
    child_port_base: int = 0
    restarts: RestartPolicy = field(default_factory=RestartPolicy)
    # How often each child's /readyz is read (it decides "ever ready" and the node's readiness).
    probe_interval_s: float = 1.0
    # Past the workers' own VIDGEN_SHUTDOWN_GRACE_S, time a draining child gets to publish, commit and leave the
    # group before it is killed (the Kubernetes manifests use the same 30 s margin).
    drain_margin_s: float = 30.0

    def child_port(self, slot: int) -> int | None:
        """Child `slot`'s fixed port, or None when a free one is picked at each start."""
        return self.child_port_base + slot if self.child_port_base else None
