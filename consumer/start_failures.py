"""What a command says when it cannot start: one line naming the setting that fixes it, for the failures people meet
first. The Kafka brokers unreachable or refusing the idempotent producer, no S3 credentials (`consumer.errors`
messages already name the variables), and a listening port already taken, checked before anything slow starts so
the answer comes within a second."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.errors import KafkaConnectionError, KafkaError

from consumer.errors import VidgenError

__all__ = ["Listener", "check_port", "explain", "taken_listener"]


@dataclass(frozen=True)
class Listener:
    """A port a command listens on, and what moves it, in the user's words (`set VIDGEN_API_PORT`)."""

    host: str
    port: int
    fix: str


def check_port(listener: Listener) -> None:
    """Raises OSError(EADDRINUSE) when `listener`'s port is taken. Binds and closes at once, as the server will bind
    (SO_REUSEADDR, so a port in TIME_WAIT counts as free); port 0 (any free port) always passes. The server's own
    bind can still lose a race, and `explain` words that the same way."""
    if listener.port == 0:
        return
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((listener.host, listener.port))


def taken_listener(exc: BaseException, listeners: Iterable[Listener]) -> Listener | None:
    """For a server with several ports that failed with `exc`: when that is a port in use (a race lost after
    `check_port`), the first of `listeners` whose port is taken now (the server's own sockets are closed by then), so
    `explain` names the setting of the right port; else None."""
    if not isinstance(exc, OSError) or exc.errno != errno.EADDRINUSE:
        return None
    for listener in listeners:
        try:
            check_port(listener)
        except OSError:
            return listener
    return None


def explain(exc: BaseException, *, bootstrap_servers: str = "", listener: Listener | None = None) -> str:
    """One line for `exc`, naming the fix where one is known; never a traceback, never a secret (bootstrap servers
    are host:port lists)."""
    if isinstance(exc, VidgenError):
        return exc.message
    if isinstance(exc, KafkaConnectionError):
        where = f" at {bootstrap_servers}" if bootstrap_servers else ""
        return f"cannot reach the Kafka brokers{where}: set VIDGEN_KAFKA_BOOTSTRAP_SERVERS (or start them)"
    if isinstance(exc, KafkaError):
        return f"Kafka refused: {exc}"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE and listener is not None:
        return f"port {listener.port} is in use: {listener.fix} (or stop what listens there)"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return repr(exc)
