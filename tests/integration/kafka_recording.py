"""A loopback proxy in front of a broker that reads every request a client sends and records, per client id, the
topics it produced to, fetched, looked up offsets of and created, and the consumer groups it joined, committed in or
read the commits of. Request bodies are decoded with aiokafka's own protocol structs; answers pass through untouched.
The ACL tests compare it with what `consumer.kafka.topic_access` says each component needs."""

from __future__ import annotations

import asyncio
import importlib
import io
import pkgutil
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiokafka.protocol
from aiokafka.protocol.api import RequestStruct
from aiokafka.protocol.types import TaggedFields

from consumer.dev.embedded import free_port

__all__ = ["ClientActivity", "RecordingProxy"]

_PRODUCE, _FETCH, _LIST_OFFSETS, _OFFSET_COMMIT, _OFFSET_FETCH, _JOIN_GROUP, _CREATE_TOPICS = 0, 1, 2, 8, 9, 11, 19


def _request_structs() -> dict[tuple[int, int], type[RequestStruct]]:
    found: dict[tuple[int, int], type[RequestStruct]] = {}
    for module in pkgutil.iter_modules(aiokafka.protocol.__path__):
        for value in vars(importlib.import_module(f"aiokafka.protocol.{module.name}")).values():
            if isinstance(value, type) and issubclass(value, RequestStruct) and "API_VERSION" in vars(value):
                found[(value.API_KEY, value.API_VERSION)] = value
    return found


_STRUCTS = _request_structs()


@dataclass
class ClientActivity:
    produced: set[str] = field(default_factory=set)
    fetched: set[str] = field(default_factory=set)
    offsets_of: set[str] = field(default_factory=set)  # ListOffsets and OffsetFetch: Describe on the topic
    created: set[str] = field(default_factory=set)
    joined: set[str] = field(default_factory=set)  # JoinGroup and OffsetCommit: Read on the group
    commits_read: set[str] = field(default_factory=set)  # OffsetFetch: Describe on the group


class RecordingProxy:
    """Clients connect to `port`; the broker must advertise it (`kafka_broker(advertised_port=...)`)."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self.port = free_port()
        self.activity: dict[str, ClientActivity] = defaultdict(ClientActivity)
        self.undecoded: set[tuple[int, int]] = set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Every connection cut first, so that each pipe ends on its own rather than by cancellation."""
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.sleep(0.1)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
        self._writers.update((client_writer, upstream_writer))
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer, record=True),
            self._pipe(upstream_reader, client_writer, record=False),
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool) -> None:
        pending = b""
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
                if not record:
                    continue
                pending += chunk
                while len(pending) >= 4 and len(pending) >= 4 + (size := struct.unpack(">i", pending[:4])[0]):
                    self._record(pending[4 : 4 + size])
                    pending = pending[4 + size :]
        except (ConnectionError, OSError):
            pass  # a client or the broker went away: its side of the pipe ends here
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    def _record(self, payload: bytes) -> None:
        api_key, version, _, length = struct.unpack(">hhih", payload[:10])
        client = payload[10 : 10 + length].decode() if length >= 0 else ""
        body = io.BytesIO(payload[10 + max(length, 0) :])
        kind = _STRUCTS.get((api_key, version))
        if api_key not in (_PRODUCE, _FETCH, _LIST_OFFSETS, _OFFSET_COMMIT, _OFFSET_FETCH, _JOIN_GROUP, _CREATE_TOPICS):
            return
        if kind is None:
            self.undecoded.add((api_key, version))
            return
        if getattr(kind, "FLEXIBLE_VERSION", False):
            TaggedFields.decode(body)  # the request header's tagged fields
        request: Any = kind.decode(body)
        seen = self.activity[client]
        if api_key == _PRODUCE:
            seen.produced.update(topic for topic, *_ in request.topics)
        elif api_key == _FETCH:
            seen.fetched.update(topic for topic, *_ in request.topics)
        elif api_key == _LIST_OFFSETS:
            seen.offsets_of.update(topic for topic, *_ in request.topics)
        elif api_key == _OFFSET_COMMIT:
            seen.joined.add(request.consumer_group)
        elif api_key == _OFFSET_FETCH:
            seen.commits_read.add(request.consumer_group)
            seen.offsets_of.update(topic for topic, *_ in request.topics or ())
        elif api_key == _JOIN_GROUP:
            seen.joined.add(request.group)
        else:
            seen.created.update(topic for topic, *_ in request.create_topic_requests)
