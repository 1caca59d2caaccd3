"""`vidgen webhook-keys reseal`: re-encrypt every tenant endpoint's secrets under the newest operator key, so that an
older key can then be dropped from `VIDGEN_WEBHOOK_SECRETS_KEY`.

Key rotation, for an operator: put the new key first (`NEW,OLD`) on the API and the notifier and restart them; run
this once; then set `NEW` alone. Secrets are never decrypted to anywhere but memory, and never printed; an endpoint
whose secret no configured key opens is reported by id and left as it is."""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiokafka.errors import KafkaError
from opentelemetry.trace import NoOpTracer

from consumer.errors import SecretUnreadable, VidgenError
from consumer.kafka.clients import start_producer
from consumer.kafka.record_publisher import RecordPublisher
from consumer.settings import ConfigurationError, Settings, describe_config_error
from consumer.start_failures import explain
from consumer.webhooks.directory import EndpointDirectory
from consumer.webhooks.follower import DirectoryFollower
from consumer.webhooks.secret_box import SecretBox

__all__ = ["reseal", "reseal_main", "reseal_parser"]


async def reseal(settings: Settings, box: SecretBox) -> tuple[int, list[str]]:
    """Rewrite every endpoint with its secrets under the newest key: (endpoints rewritten, ids left unreadable)."""
    directory = EndpointDirectory()
    follower = DirectoryFollower(settings, directory)
    await follower.start()
    try:
        await follower.catch_up()
    finally:
        await follower.stop()
    producer = await start_producer(settings)  # brokers without the idempotent producer: the setting is named
    rewritten, unreadable = 0, []
    try:
        publisher = RecordPublisher(producer, tracer=NoOpTracer())
        for record in directory.records():
            try:
                secrets = [
                    secret.model_copy(update={"ciphertext": box.reseal(secret.ciphertext)}) for secret in record.secrets
                ]
            except SecretUnreadable:
                unreadable.append(record.id)
                continue
            await publisher.publish(settings.webhooks_topic, record.id, record.model_copy(update={"secrets": secrets}))
            rewritten += 1
    finally:
        await producer.stop()
    return rewritten, unreadable


def reseal_parser(prog: str = "vidgen webhook-keys") -> argparse.ArgumentParser:
    """`vidgen webhook-keys`' arguments (the CLI reference is generated from them)."""
    parser = argparse.ArgumentParser(prog=prog, description="Manage the key that encrypts tenant webhook secrets.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("reseal", help="re-encrypt every endpoint's secrets under the newest key")
    return parser


def reseal_main(argv: list[str], *, prog: str = "vidgen webhook-keys") -> int:
    """Exit 0 when every endpoint was rewritten, 1 when some did not decrypt (or Kafka failed), 2 on bad
    configuration."""
    reseal_parser(prog).parse_args(argv)
    try:
        settings = Settings()
    except ConfigurationError as exc:
        print(f"{prog}: invalid configuration:\n{describe_config_error(exc, Settings)}", file=sys.stderr)  # noqa: T201
        return 2
    if settings.webhook_secrets_key is None:
        print(f"{prog}: set VIDGEN_WEBHOOK_SECRETS_KEY (newest key first)", file=sys.stderr)  # noqa: T201 - CLI
        return 2
    try:
        rewritten, unreadable = asyncio.run(reseal(settings, SecretBox(settings.webhook_secrets_key)))
    except (KafkaError, VidgenError) as exc:  # one line naming the fix: the brokers, the idempotent producer
        print(f"{prog}: {explain(exc, bootstrap_servers=settings.kafka_bootstrap_servers)}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"{rewritten} endpoint(s) re-encrypted under the newest key")  # noqa: T201 - CLI
    if unreadable:
        print(f"{prog}: no configured key opens: {', '.join(unreadable)}", file=sys.stderr)  # noqa: T201 - CLI
        return 1
    return 0
