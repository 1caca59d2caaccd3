"""The `vidgen` commands as a person runs them (the installed console script, a real process) against the real
broker and S3 server: `vidgen watch` answers at once for a finished request and follows a running one; every
failure a newcomer meets first (the demo broker refusing the idempotent producer, no broker, bad arguments, bad
configuration, no S3 credentials, a taken port) is one line naming the fix, with its exit code, and nothing else:
no traceback, no asyncio "Unclosed" noise. Each process is bounded well under a minute."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumer.dev.demo import product_image
from consumer.dev.embedded import free_port
from consumer.settings import Settings
from schemas.events import ErrorInfo, Timings, VideoResult
from tests.support import REPO, KafkaClient, request_body

VIDGEN = Path(sys.executable).parent / "vidgen"  # the console script `pip install` made, as people run it
IDEMPOTENCE_REFUSED = (
    "the brokers refused an idempotent producer (InitProducerId: UnknownError): set "
    "VIDGEN_KAFKA_ENABLE_IDEMPOTENCE=false where they do not support it (tansu, some managed services), or grant the "
    "IdempotentWrite permission"
)
NO_CREDENTIALS = (
    "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a role "
    "(an instance profile, IRSA or another web identity)"
)


def _environment(settings: Settings | None = None, **variables: str) -> dict[str, str]:
    """This test run's environment without its VIDGEN_* variables, plus `settings` as variables, plus `variables`."""
    base = {name: value for name, value in os.environ.items() if not name.startswith("VIDGEN_")}
    configured = settings.as_environment() if settings is not None else {}
    return {**base, **configured, "VIDGEN_LOG_FORMAT": "text", **variables}


async def _vidgen(*argv: str, env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [str(VIDGEN), *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _result(request_id: str, status: str = "completed") -> bytes:
    now = datetime.now(UTC)
    error = (
        ErrorInfo(code="render_failed", message="the pipeline raised", retryable=True) if status == "failed" else None
    )
    result = VideoResult(
        request_id=request_id,
        tenant_id="shop-1",
        status=status,  # type: ignore[arg-type]
        error=error,
        timings=Timings(received_at=now, completed_at=now),
        worker_id="another-worker",
        model="tiny",
    )
    return result.model_dump_json().encode()


# ------------------------------------------------------------------------------------------------ vidgen watch


async def test_watch_answers_at_once_with_the_result_that_already_exists(
    settings: Settings, kafka: KafkaClient
) -> None:
    """Results as workers publish them (keyed by request id, default partitioner), on both partitions, long before
    the watch: each is found at once (the 600 s timeout never comes into play), the latest answer of a request wins."""
    partitions: dict[int, str] = {}
    for n in range(12):
        metadata = await kafka.producer.send_and_wait(
            settings.results_topic, key=f"done-{n}".encode(), value=_result(f"done-{n}", status="failed")
        )
        partitions.setdefault(metadata.partition, f"done-{n}")
    assert sorted(partitions) == [0, 1]
    first, second = partitions[0], partitions[1]
    await kafka.producer.send_and_wait(
        settings.results_topic, key=first.encode(), value=_result(first)
    )  # answered again

    env = _environment(settings)
    completed = await _vidgen("watch", first, "--timeout", "600", env=env)
    assert completed.returncode == 0, completed.stderr
    answer = VideoResult.model_validate_json(completed.stdout)
    assert (answer.request_id, answer.status) == (first, "completed")
    assert completed.stderr == ""

    failed = await _vidgen("watch", second, "--timeout", "600", env=env)
    assert failed.returncode == 1, failed.stderr
    assert VideoResult.model_validate_json(failed.stdout).status == "failed"


async def test_watch_follows_a_running_request_until_its_result(
    settings: Settings, kafka: KafkaClient, start_worker
) -> None:
    """Started before the request is published (so it may look up nothing, then follow): it ends with the result
    whichever way the race between its start and the worker goes."""
    chatty = settings.model_copy(update={"progress_events": True, "progress_interval_s": 0})
    await start_worker(chatty)
    watching = asyncio.create_task(_vidgen("watch", "running-1", "--timeout", "50", env=_environment(chatty)))
    await kafka.send(request_body("running-1", num_inference_steps=4))
    done = await watching
    assert done.returncode == 0, done.stderr
    assert VideoResult.model_validate_json(done.stdout).status == "completed"


async def test_watch_without_a_result_exits_2_after_its_timeout(settings: Settings, kafka: KafkaClient) -> None:
    done = await _vidgen("watch", "nobody", "--timeout", "2", env=_environment(settings))
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "vidgen watch: no result for nobody within 2s\n")


# ------------------------------------------------------------------------------------- Kafka, one line each


async def test_client_commands_name_the_idempotence_setting_and_close_their_clients(
    settings: Settings, kafka: KafkaClient
) -> None:
    """tansu (the demo's broker) refuses the idempotent producer that is the default for Apache Kafka."""
    env = _environment(settings, VIDGEN_KAFKA_ENABLE_IDEMPOTENCE="true")
    submitted = await _vidgen("submit", "--prompt", "a red sneaker", env=env)
    assert (submitted.returncode, submitted.stderr) == (69, f"vidgen submit: cannot publish: {IDEMPOTENCE_REFUSED}\n")
    cancelled = await _vidgen("cancel", "req-1", "--tenant", "shop-1", env=env)
    assert (cancelled.returncode, cancelled.stderr) == (69, f"vidgen cancel: cannot publish: {IDEMPOTENCE_REFUSED}\n")


async def test_client_commands_name_the_bootstrap_variable_when_no_broker_answers(settings: Settings) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    env = _environment(settings, VIDGEN_KAFKA_BOOTSTRAP_SERVERS=nowhere)
    why = f"cannot reach the Kafka brokers at {nowhere}: set VIDGEN_KAFKA_BOOTSTRAP_SERVERS (or start them)"
    for argv, failing in [
        (["submit", "--prompt", "x"], "cannot publish"),
        (["watch", "req-1"], "cannot follow"),
        (["cancel", "req-1", "--tenant", "shop-1"], "cannot publish"),
    ]:
        done = await _vidgen(*argv, env=env)
        assert (done.returncode, done.stderr) == (69, f"vidgen {argv[0]}: {failing}: {why}\n")


# ------------------------------------------------------------------------- arguments and configuration


async def test_bad_arguments_get_one_line_per_option() -> None:
    env = _environment()
    refused = await _vidgen("submit", "--prompt", "x", "--width", "500", "--fps", "99", env=env)
    assert (refused.returncode, refused.stderr) == (
        64,
        "vidgen submit: invalid arguments:\n"
        "  --width: Input should be a multiple of 16\n"
        "  --fps: Input should be less than or equal to 60\n",
    )
    cancel = await _vidgen("cancel", "a b", "--tenant", "shop/1", env=env)
    assert (cancel.returncode, cancel.stderr) == (
        64,
        "vidgen cancel: invalid arguments:\n"
        "  REQUEST_ID: String should match pattern '^[A-Za-z0-9._:-]+$'\n"
        "  --tenant: String should match pattern '^[A-Za-z0-9._:-]+$'\n",
    )
    usage = await _vidgen("watch", env=env)
    assert (usage.returncode, usage.stderr) == (64, "vidgen watch: the following arguments are required: REQUEST_ID\n")


async def test_bad_configuration_gets_one_line_per_variable() -> None:
    env = _environment()
    worker = await _vidgen("run", env={**env, "VIDGEN_MAX_INFLIGHT_JOBS": "0"})
    assert (worker.returncode, worker.stderr) == (
        2,
        "vidgen: invalid configuration:\n  VIDGEN_MAX_INFLIGHT_JOBS: Input should be greater than or equal to 1\n",
    )
    api = await _vidgen("api", env={**env, "VIDGEN_API_KEYS_FILE": "keys"})
    assert (api.returncode, api.stderr) == (
        2,
        "vidgen api: invalid configuration:\n  VIDGEN_API_ID_KEY: required, and not set\n",
    )
    watch = await _vidgen("watch", "req-1", env={**env, "VIDGEN_TOPIC_PARTITIONS": "four"})
    assert (watch.returncode, watch.stderr) == (
        78,
        "vidgen watch: invalid configuration:\n"
        "  VIDGEN_TOPIC_PARTITIONS: Input should be a valid integer, unable to parse string as an integer\n",
    )


# ----------------------------------------------------------------------------------------- S3 credentials


@pytest.fixture
def no_aws_credentials(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment where the AWS chain finds nothing: no variables, no files, no instance metadata."""
    cleared = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    yield {
        **cleared,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _without_credentials(settings: Settings, no_aws_credentials: dict[str, str]) -> dict[str, str]:
    worker = settings.model_copy(update={"model": "standin", "http_port": 0})
    return {**no_aws_credentials, **worker.as_environment(), "VIDGEN_LOG_FORMAT": "text"}


async def test_a_worker_without_s3_credentials_names_the_variables_at_start_up(
    settings: Settings, kafka: KafkaClient, no_aws_credentials: dict[str, str]
) -> None:
    worker = await _vidgen("run", env=_without_credentials(settings, no_aws_credentials))
    assert worker.returncode == 1, worker.stderr
    assert worker.stderr.splitlines()[-1].endswith(f" CRITICAL consumer: worker cannot start: {NO_CREDENTIALS}")
    assert "Traceback" not in worker.stderr


async def test_submit_and_the_job_api_without_s3_credentials_name_the_variables(
    settings: Settings, kafka: KafkaClient, no_aws_credentials: dict[str, str], tmp_path: Path
) -> None:
    image = tmp_path / "shoe.png"
    image.write_bytes(product_image(256, 256))
    env = _without_credentials(settings, no_aws_credentials)
    submitted = await _vidgen("submit", "--prompt", "a red sneaker", "--image", str(image), env=env)
    assert (submitted.returncode, submitted.stderr) == (69, f"vidgen submit: cannot publish: {NO_CREDENTIALS}\n")
    api_env = {
        **env,
        "VIDGEN_API_PORT": "0",
        "VIDGEN_API_OPERATOR_PORT": "0",
        "VIDGEN_API_ID_KEY": "an-id-key-for-tests-only-0123456789abcdef",
        "VIDGEN_API_KEYS_FILE": str(tmp_path / "keys"),
        "VIDGEN_API_STATE_PATH": str(tmp_path / "view.sqlite3"),
    }
    api = await _vidgen("api", env=api_env)
    assert api.returncode == 1, api.stderr
    assert api.stderr.splitlines()[-1].endswith(f" CRITICAL consumer.api.commands: job API stopped: {NO_CREDENTIALS}")


# ------------------------------------------------------------------------------------------------ taken ports


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


async def test_a_taken_port_is_named_with_the_setting_that_moves_it_before_anything_starts(
    taken_port: int, tmp_path: Path
) -> None:
    """Checked first: with a broker nowhere, the answer is still about the port (nothing else was tried)."""
    nowhere = {
        "VIDGEN_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "VIDGEN_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    env = _environment(**nowhere)
    worker = await _vidgen("run", env={**env, "VIDGEN_HTTP_HOST": "127.0.0.1", "VIDGEN_HTTP_PORT": str(taken_port)})
    assert worker.returncode == 1
    [line] = worker.stderr.splitlines()
    assert line.endswith(
        f" CRITICAL consumer: worker cannot start: port {taken_port} is in use: set VIDGEN_HTTP_PORT (or stop what "
        "listens there)"
    )
    api_env = {
        **env,
        "VIDGEN_API_HOST": "127.0.0.1",
        "VIDGEN_API_ID_KEY": "an-id-key-for-tests-only-0123456789abcdef",
        "VIDGEN_API_KEYS_FILE": str(tmp_path / "keys"),
    }
    ports = ("VIDGEN_API_PORT", "VIDGEN_API_OPERATOR_PORT")
    for taken, free in (ports, ports[::-1]):  # either port: named by its own variable
        api = await _vidgen("api", env={**api_env, taken: str(taken_port), free: "0"})
        assert api.returncode == 1
        [line] = api.stderr.splitlines()
        assert line.endswith(
            f"job API cannot start: port {taken_port} is in use: set {taken} (or stop what listens there)"
        ), taken
    demo = await _vidgen("demo", "--api", "--port", str(taken_port), env=_environment())
    assert (demo.returncode, demo.stdout, demo.stderr) == (
        1,
        "",
        f"vidgen demo --api: port {taken_port} is in use: pass --port (0: any free port) (or stop what listens "
        "there)\n",
    )
