"""Which workers `vidgen run --gpus` starts and with what environment: pure, no processes, no CUDA."""

from __future__ import annotations

import logging

import pytest

from consumer.errors import VidgenError
from consumer.settings import Settings
from consumer.supervisor import SupervisorOptions, run_supervisor
from consumer.supervisor.plan import (
    ChildPlan,
    child_environment,
    parse_gpus,
    plan_children,
    select_devices,
    visible_devices,
)


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [("all", None), ("ALL", None), ("2", 2), ("1", 1), ("0,2,5", (0, 2, 5)), (" 0, 2 ", (0, 2)), ("3,1", (3, 1))],
)
def test_gpu_selections_parse(spec: str, parsed: int | tuple[int, ...] | None) -> None:
    assert parse_gpus(spec) == parsed


@pytest.mark.parametrize("spec", ["", "0", "-1", "two", "0,0", "1,", ",1", "0;2", "12345", "1.5", "all,0"])
def test_bad_gpu_selections_are_refused(spec: str) -> None:
    with pytest.raises(VidgenError) as caught:
        parse_gpus(spec)
    assert caught.value.code == "invalid_gpu_selection"


def test_a_refused_selection_is_not_echoed() -> None:
    hostile = "\x1b[2J" + "A" * 10_000
    with pytest.raises(VidgenError) as caught:
        parse_gpus(hostile)
    assert "\x1b" not in caught.value.message and len(caught.value.message) < 200


def test_visible_devices_follow_the_supervisors_own_mask() -> None:
    assert visible_devices(None, 3) == ("0", "1", "2")
    assert visible_devices("GPU-aaa, GPU-bbb", 2) == ("GPU-aaa", "GPU-bbb")
    assert visible_devices("3,1,7", 2) == ("3", "1")  # CUDA stopped at an invalid entry
    assert visible_devices("", 0) == ()


def test_gpu_children_get_the_selected_devices() -> None:
    visible = ("0", "1", "2", "3", "4", "5")
    assert select_devices(None, device="auto", visible=visible) == visible
    assert select_devices(2, device="cuda", visible=visible) == ("0", "1")
    assert select_devices((0, 2, 5), device="auto", visible=visible) == ("0", "2", "5")
    # Indexes count what the supervisor sees: under CUDA_VISIBLE_DEVICES=5,3 index 1 is physical GPU 3.
    assert select_devices((1,), device="auto", visible=("5", "3")) == ("3",)


def test_cpu_children_need_a_count_only() -> None:
    assert select_devices(2, device="cpu", visible=()) == (None, None)
    for request in (None, (0, 1)):
        with pytest.raises(VidgenError, match="VIDGEN_DEVICE=cpu"):
            select_devices(request, device="cpu", visible=())


@pytest.mark.parametrize(
    ("request_", "visible", "message"),
    [
        (3, ("0", "1"), "more GPUs than the 2 visible"),
        ((0, 2), ("0", "1"), "names GPU 2, but only indexes 0-1"),
        (None, (), "no GPU is visible"),
        (1, (), "set VIDGEN_DEVICE=cpu"),
    ],
)
def test_selections_this_node_cannot_run_are_refused(
    request_: int | tuple[int, ...] | None, visible: tuple[str, ...], message: str
) -> None:
    with pytest.raises(VidgenError, match=message):
        select_devices(request_, device="auto", visible=visible)


def test_each_child_has_its_own_ids_and_keeps_them() -> None:
    settings = Settings(worker_id="node-a", group_instance_id="pod-7")
    plans = plan_children(settings, ("0", "2"))
    assert [(p.slot, p.gpu, p.worker_id, p.group_instance_id) for p in plans] == [
        (0, "0", "node-a-0", "pod-7-0"),
        (1, "2", "node-a-1", "pod-7-1"),
    ]
    assert plans[1].labels == {"worker": "1", "gpu": "2"}
    cpu = plan_children(Settings(worker_id="node-a"), (None, None))
    assert [p.group_instance_id for p in cpu] == [None, None]
    assert cpu[0].labels == {"worker": "0"}


def test_child_environment_rebuilds_the_settings_with_the_childs_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(worker_id="node-a", group_instance_id="pod-7", model="standin", kafka_sasl_password="s3cret")
    parent = {"PATH": "/usr/bin", "AWS_PROFILE": "render", "VIDGEN_MODEL": "ignored", "VIDGEN_TYPO": "dropped"}
    plan = ChildPlan(slot=1, gpu="GPU-bbb", worker_id="node-a-1", group_instance_id="pod-7-1")
    environment = child_environment(parent, settings, plan, http_port=9101)

    assert environment["PATH"] == "/usr/bin" and environment["AWS_PROFILE"] == "render"
    assert "VIDGEN_TYPO" not in environment
    assert environment["CUDA_VISIBLE_DEVICES"] == "GPU-bbb"
    assert environment["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # indexes as nvidia-smi numbers them
    for name, value in environment.items():
        if name.startswith("VIDGEN_"):
            monkeypatch.setenv(name, value)
    child = Settings()
    assert (child.worker_id, child.group_instance_id, child.http_host, child.http_port) == (
        "node-a-1",
        "pod-7-1",
        "127.0.0.1",  # children answer only the supervisor
        9101,
    )
    assert child.model == "standin"
    assert child.kafka_sasl_password is not None and child.kafka_sasl_password.get_secret_value() == "s3cret"
    unchanged = {"worker_id", "group_instance_id", "http_host", "http_port"}
    assert child.model_dump(exclude=unchanged) == settings.model_dump(exclude=unchanged)


def test_cuda_order_is_left_to_a_mask_or_the_operator() -> None:
    settings = Settings(worker_id="n")
    gpu = ChildPlan(slot=0, gpu="3", worker_id="n-0", group_instance_id=None)
    assert "CUDA_DEVICE_ORDER" not in child_environment({"CUDA_VISIBLE_DEVICES": "5,3"}, settings, gpu, http_port=1)
    ordered = child_environment({"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, settings, gpu, http_port=1)
    assert ordered["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"
    cpu = ChildPlan(slot=0, gpu=None, worker_id="n-0", group_instance_id=None)
    assert "CUDA_VISIBLE_DEVICES" not in child_environment({}, settings, cpu, http_port=1)
    assert "VIDGEN_GROUP_INSTANCE_ID" not in child_environment({}, settings, cpu, http_port=1)


@pytest.mark.parametrize(
    ("device", "gpus", "count", "message"),
    [
        ("cpu", "all", 0, "VIDGEN_DEVICE=cpu"),
        ("auto", "2", 0, "no GPU is visible"),
        ("auto", "0,3", 2, "names GPU 3"),
        ("auto", "nine", 2, "--gpus takes"),
    ],
)
def test_run_supervisor_refuses_what_the_node_cannot_run_before_starting_anything(
    caplog: pytest.LogCaptureFixture, device: str, gpus: str, count: int, message: str
) -> None:
    settings = Settings(device=device)
    with caplog.at_level(logging.CRITICAL, logger="consumer.supervisor"):
        assert run_supervisor(settings, gpus, environ={}, gpu_count=lambda: count) == 2
    assert message in caplog.text


@pytest.mark.parametrize(("base", "ports"), [(8080, "8080-8081"), (65_535, "65535-65536")])
def test_fixed_child_ports_must_be_ports_and_leave_the_nodes_port_free(
    caplog: pytest.LogCaptureFixture, base: int, ports: str
) -> None:
    settings = Settings(device="cpu", http_port=8081)
    with caplog.at_level(logging.CRITICAL, logger="consumer.supervisor"):
        assert run_supervisor(settings, "2", environ={}, options=SupervisorOptions(child_port_base=base)) == 2
    assert (
        f"the child ports {ports} must be valid ports that leave the node's VIDGEN_HTTP_PORT 8081 free" in caplog.text
    )
