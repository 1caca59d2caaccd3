"""Kafka connection security built from settings: SASL over SSL, mutual TLS, a CA file. Pure, no broker."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from consumer.kafka.clients import client_options
from consumer.settings import Settings


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    client = ca.issue_cert("vidgen-worker")
    paths = {"cafile": folder / "ca.pem", "certfile": folder / "client.pem", "keyfile": folder / "client.key"}
    ca.cert_pem.write_to_path(str(paths["cafile"]))
    client.cert_chain_pems[0].write_to_path(str(paths["certfile"]))
    client.private_key_pem.write_to_path(str(paths["keyfile"]))
    return {name: str(path) for name, path in paths.items()}


def test_plaintext_by_default() -> None:
    options = client_options(Settings(kafka_bootstrap_servers="k1:9092,k2:9092", worker_id="w"))
    assert options == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
        "client_id": "vidgen-w",
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_ssl_with_a_ca_file(mechanism: str, tls_files: dict[str, str]) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="renderer",
        kafka_sasl_password="s3cr3t-Value-123",
        kafka_ssl_cafile=tls_files["cafile"],
    )
    options = client_options(settings)
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_SSL", mechanism)
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("renderer", "s3cr3t-Value-123")
    context: ssl.SSLContext = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "s3cr3t" not in repr(settings)


def test_mutual_tls_loads_the_client_certificate(tls_files: dict[str, str]) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=tls_files["cafile"],
        kafka_ssl_certfile=tls_files["certfile"],
        kafka_ssl_keyfile=tls_files["keyfile"],
    )
    context: ssl.SSLContext = client_options(settings)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in client_options(settings)


def test_a_missing_certificate_file_fails_at_start_up(tmp_path: Path) -> None:
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):
        client_options(settings)


def test_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`as_environment` (how tests and benchmarks configure worker processes) rebuilds the same settings."""
    original = Settings(
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_password="s3cr3t-Value-123",
        s3_image_buckets=("a", "b"),
        create_topics=False,
        render_timeout_s=12.5,
    )
    for name, value in original.as_environment().items():
        monkeypatch.setenv(name, value)
    rebuilt = Settings()
    assert rebuilt == original
    assert rebuilt.kafka_sasl_password is not None
    assert rebuilt.kafka_sasl_password.get_secret_value() == "s3cr3t-Value-123"
