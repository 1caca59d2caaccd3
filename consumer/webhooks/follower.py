"""Keeps an `EndpointDirectory` in step with the compacted webhooks topic: every partition read from the beginning
without a consumer group (every API replica and every notifier sees every endpoint), then followed
(`consumer.kafka.topic_follower`). `caught_up` turns true once each partition has been read up to where it ended at
start-up; until then the API answers 503 on `/v1/webhooks` and its readiness says so."""

from __future__ import annotations

from consumer.kafka.topic_follower import TopicFollower
from consumer.settings import Settings
from consumer.webhooks.directory import EndpointDirectory

__all__ = ["DirectoryFollower"]


class DirectoryFollower(TopicFollower):
    def __init__(self, settings: Settings, directory: EndpointDirectory) -> None:
        super().__init__(
            settings,
            [settings.webhooks_topic],
            lambda record: directory.apply(record.key, record.value),
            name="webhook endpoints",
        )
