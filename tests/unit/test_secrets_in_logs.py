"""Secrets never reach the logs: the Kafka SASL password from settings and the AWS secret key from the environment,
with production JSON logging at DEBUG, through the code paths that build clients and handle their failures."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError

from consumer.kafka.clients import client_options, make_producer
from consumer.object_store import ObjectStore, open_s3_client
from consumer.settings import Settings
from consumer.telemetry.logs import configure_logging

SASL_PASSWORD = "s3cr3t-Value-123"
AWS_SECRET = "aws-S3cret-Key-456/xyz"
SECRETS = (SASL_PASSWORD, AWS_SECRET)

log = logging.getLogger("tests.secrets")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers (pytest's capture included): put everything back."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {name: logging.getLogger(name).level for name in ("aiokafka", "botocore", "aiobotocore")}
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("VIDGEN_KAFKA_SASL_PASSWORD", SASL_PASSWORD)  # the way production passes it
    port = _closed_port()
    return Settings(
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="vidgen",
        s3_endpoint_url=f"http://127.0.0.1:{port}",
        create_topics=False,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_settings_repr_str_and_dumps_mask_the_password(settings: Settings) -> None:
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == SASL_PASSWORD  # the setting did arrive
    for rendering in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        json.dumps(settings.model_dump(), default=str),
        json.dumps(settings.model_dump(mode="json")),
    ):
        _assert_clean(rendering)


def test_settings_validation_errors_do_not_echo_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI prints this error; an unrelated bad value must not drag the secret along.
    monkeypatch.setenv("VIDGEN_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("VIDGEN_TOPIC_PARTITIONS", "0")
    with pytest.raises(ValidationError) as caught:
        Settings()
    _assert_clean(str(caught.value))


def test_logging_settings_and_extra_fields_in_json_keeps_secrets_out(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="json", level="DEBUG")
    log.info("starting with %s", settings)
    log.info("starting with %r", settings)
    log.info("settings dump %s", settings.model_dump())
    log.warning(
        "job context",
        extra={"settings": settings, "dump": settings.model_dump(), "request_id": "r-1", "partition": 3},
    )
    options = client_options(settings)  # handed to aiokafka, never logged
    assert options["sasl_plain_password"] == SASL_PASSWORD
    log.error("wrapped failure", exc_info=RuntimeError(f"failed with {settings!r}"))
    err = capsys.readouterr().err
    _assert_clean(err)
    lines = _json_lines(err)
    assert len(lines) == 5
    assert lines[3]["request_id"] == "r-1"
    assert "**********" in str(lines[3]["dump"])


def test_text_logging_keeps_secrets_out(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="text", level="DEBUG")
    log.info("starting with %s / %r / %s", settings, settings, settings.model_dump())
    err = capsys.readouterr().err
    assert "starting with" in err
    _assert_clean(err)


async def test_kafka_client_failing_to_connect_logs_no_secret(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="json", level="DEBUG")  # aiokafka at DEBUG too
    producer = make_producer(settings)
    with pytest.raises(KafkaConnectionError) as caught:
        await producer.start()
    await producer.stop()
    log.error("broker unreachable: %r", caught.value, exc_info=caught.value)
    err = capsys.readouterr().err
    assert "broker unreachable" in err
    _assert_clean(err)


async def test_s3_client_signing_logs_no_secret(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json", level="DEBUG")  # botocore logs canonical requests and signatures at DEBUG
    logging.getLogger("botocore").setLevel("DEBUG")
    async with open_s3_client(settings) as s3:
        url = await ObjectStore(s3, bucket="bucket", presign_ttl_s=60).presign("videos/a.mp4")
    log.info("presigned %s", url)
    err = capsys.readouterr().err
    assert "Credential=AKIDEXAMPLE" in err or "AKIDEXAMPLE" in url  # signing ran with these credentials
    _assert_clean(err)
    _assert_clean(url)
