"""Errors in people's words, as pure functions: configuration errors name the environment variables, a refused request
names the options, a start-up failure names the setting that fixes it; none shows the input or a pydantic link.
The commands' real processes saying these lines are in tests/integration/test_cli_answers.py."""

from __future__ import annotations

import errno
import json
import socket

import pytest
from aiokafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError
from pydantic import ValidationError
from pydantic_settings import SettingsError

from consumer.api.api_settings import ApiSettings
from consumer.errors import ProducerUnsupported
from consumer.settings import Settings, describe_config_error
from consumer.start_failures import Listener, check_port, explain, taken_listener
from producer_examples.command_line import describe_invalid
from producer_examples.product_hook import HookSettings
from producer_examples.publish_request import OPTIONS, build_request, submit_parser
from schemas.events import VideoRequest

SECRET = "a-secret-value-that-must-never-show"
ID_KEY = "k" * 40


def _config_error(model: type[Settings] | type[ApiSettings] | type[HookSettings], **values: object) -> str:
    with pytest.raises((ValidationError, SettingsError)) as caught:
        model(**values)
    return describe_config_error(caught.value, model)


def test_configuration_errors_name_the_environment_variable_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_MAX_INFLIGHT_JOBS", "0")
    monkeypatch.setenv("VIDGEN_TOPIC_PARTITIONS", "four")
    monkeypatch.setenv("VIDGEN_WARMUP", "big")
    assert sorted(_config_error(Settings).splitlines()) == [
        "  VIDGEN_MAX_INFLIGHT_JOBS: Input should be greater than or equal to 1",
        "  VIDGEN_TOPIC_PARTITIONS: Input should be a valid integer, unable to parse string as an integer",
        "  VIDGEN_WARMUP: must look like 512x512x25 (width x height x frames)",
    ]


def test_the_job_apis_errors_name_vidgen_api_variables_never_field_names() -> None:
    assert _config_error(ApiSettings, keys_file="keys") == "  VIDGEN_API_ID_KEY: required, and not set"
    assert _config_error(ApiSettings, id_key="short", keys_file="keys") == (
        "  VIDGEN_API_ID_KEY must be at least 32 characters"
    )
    assert _config_error(ApiSettings, id_key=ID_KEY) == (
        "  no way to authenticate callers: set VIDGEN_API_KEYS_FILE, VIDGEN_API_JWT_JWKS_URL or "
        "VIDGEN_API_JWT_PUBLIC_KEY_FILE"
    )
    assert _config_error(ApiSettings, id_key=ID_KEY, keys_file="k", rate_per_s=0, burst=0).splitlines() == [
        "  VIDGEN_API_RATE_PER_S: Input should be greater than 0",
        "  VIDGEN_API_BURST: Input should be greater than or equal to 1",
    ]


def test_a_field_with_aliases_names_each_variable_that_sets_it() -> None:
    described = _config_error(HookSettings, secret="s" * 20, id_key=ID_KEY, otlp_endpoint=42)
    assert described.startswith("  VIDGEN_HOOK_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT: ")


def test_a_variable_that_is_not_json_is_named_and_its_value_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_API_TENANT_FALLBACK", "{" + SECRET)
    assert _config_error(ApiSettings, id_key=ID_KEY, keys_file="k") == "  VIDGEN_API_TENANT_FALLBACK: not valid JSON"


def test_configuration_errors_never_show_the_input_nor_a_link() -> None:
    described = _config_error(Settings, kafka_sasl_mechanism=SECRET, s3_bucket=123)
    assert described.splitlines() == [
        "  VIDGEN_S3_BUCKET: Input should be a valid string",
        "  VIDGEN_KAFKA_SASL_MECHANISM: Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'",
    ]
    assert SECRET not in described and "errors.pydantic.dev" not in described and "input_value" not in described


def test_without_the_model_the_lines_name_the_fields_as_before() -> None:
    with pytest.raises(ValidationError) as caught:
        ApiSettings(keys_file="keys")
    assert describe_config_error(caught.value) == "  id_key: required, and not set"


def test_the_console_defaults_must_be_a_request_the_contract_accepts() -> None:
    api = ApiSettings(id_key=ID_KEY, keys_file="k", console_defaults={"width": 256, "num_inference_steps": 4})
    assert api.console_defaults == {"width": 256, "num_inference_steps": 4}
    assert _config_error(ApiSettings, id_key=ID_KEY, keys_file="k", console_defaults={"width": 250}) == (
        "  VIDGEN_API_CONSOLE_DEFAULTS: width: Input should be a multiple of 16"
    )
    assert _config_error(ApiSettings, id_key=ID_KEY, keys_file="k", console_defaults={"fps": 3}).startswith(
        "  VIDGEN_API_CONSOLE_DEFAULTS [fps.[key]]: Input should be 'width', "
    )


# ------------------------------------------------------------------------------------------ refused requests


def test_a_refused_request_names_the_options_one_line_per_field() -> None:
    argv = ["--prompt", "x", "--width", "500", "--frames", "99", "--guidance", "0", "--metadata", "k=" + "v" * 600]
    with pytest.raises(ValidationError) as caught:
        build_request(submit_parser().parse_args(argv), image_url=None)
    assert describe_invalid(caught.value, OPTIONS).splitlines() == [
        "  --width: Input should be a multiple of 16",
        "  --frames: Input should be less than or equal to 49",
        "  --guidance: Input should be greater than or equal to 1",
        "  --metadata [k]: String should have at most 512 characters",
    ]


def test_every_request_field_the_command_line_sets_is_named_by_an_option_it_has() -> None:
    options = {option for action in submit_parser()._actions for option in action.option_strings}
    assert set(OPTIONS.values()) <= options
    assert set(OPTIONS) <= set(VideoRequest.model_fields) | {"deadline"}


# ------------------------------------------------------------------------------------------ start-up failures


def test_a_taken_port_is_found_before_anything_starts_and_named_with_its_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listener = Listener("127.0.0.1", taken.getsockname()[1], "set VIDGEN_API_PORT")
        with pytest.raises(OSError) as caught:
            check_port(listener)
    assert caught.value.errno == errno.EADDRINUSE
    assert explain(caught.value, listener=listener) == (
        f"port {listener.port} is in use: set VIDGEN_API_PORT (or stop what listens there)"
    )
    check_port(Listener("127.0.0.1", 0, "set VIDGEN_API_PORT"))  # any free port: nothing to check


def test_a_port_lost_after_the_check_is_named_by_the_listener_now_taken() -> None:
    """The job API listens on two ports; a race lost after `check_port` names the one that is taken, not the first."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            free = spare.getsockname()[1]
        api = Listener("127.0.0.1", free, "set VIDGEN_API_PORT")
        operator = Listener("127.0.0.1", taken.getsockname()[1], "set VIDGEN_API_OPERATOR_PORT")
        lost = OSError(errno.EADDRINUSE, "error while attempting to bind on address: address already in use")
        assert taken_listener(lost, (api, operator)) is operator
        assert explain(lost, listener=taken_listener(lost, (api, operator))) == (
            f"port {operator.port} is in use: set VIDGEN_API_OPERATOR_PORT (or stop what listens there)"
        )
        assert taken_listener(OSError(errno.EACCES, "Permission denied"), (api, operator)) is None  # not a port


def test_kafka_failures_name_the_variable_that_fixes_them() -> None:
    unreachable = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1, <AddressFamily.AF_INET: 2>)]")
    assert explain(unreachable, bootstrap_servers="127.0.0.1:1") == (
        "cannot reach the Kafka brokers at 127.0.0.1:1: set VIDGEN_KAFKA_BOOTSTRAP_SERVERS (or start them)"
    )
    refused = ProducerUnsupported("set VIDGEN_KAFKA_ENABLE_IDEMPOTENCE=false ...")
    assert explain(refused) == "set VIDGEN_KAFKA_ENABLE_IDEMPOTENCE=false ..."
    missing = UnknownTopicOrPartitionError("topic video.results does not exist (VIDGEN_RESULTS_TOPIC; ...)")
    assert "VIDGEN_RESULTS_TOPIC" in explain(missing)


def test_an_unknown_failure_is_still_one_line() -> None:
    assert explain(PermissionError(errno.EACCES, "Permission denied", "/state.db")) == "Permission denied: /state.db"
    assert len(explain(ValueError(json.dumps({"a": 1}))).splitlines()) == 1
