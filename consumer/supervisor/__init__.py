"""One worker process per GPU on a node (`vidgen run --gpus`): planning and restart decisions are pure
(`plan`, `restarts`, `node_metrics`); `child` and `node_http` are the processes and the node's HTTP side."""

from consumer.supervisor.options import SupervisorOptions
from consumer.supervisor.restarts import RestartPolicy
from consumer.supervisor.run import run_supervisor

__all__ = ["RestartPolicy", "SupervisorOptions", "run_supervisor"]
