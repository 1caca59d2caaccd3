"""The supported model families, by name (`tiny:<family>`) and by the pipeline class a folder's `model_index.json`
names."""

from __future__ import annotations

from consumer.errors import ModelUnavailable
from consumer.render.families.base import FamilyAdapter
from consumer.render.families.cogvideox import CogVideoXAdapter
from consumer.render.families.easyanimate import EasyAnimateAdapter
from consumer.render.families.hunyuanvideo15 import HunyuanVideo15Adapter
from consumer.render.families.ltx import LtxAdapter
from consumer.render.families.wan import WanAdapter

__all__ = ["ADAPTERS", "adapter_for_class", "adapter_named", "supported"]

ADAPTERS: tuple[FamilyAdapter, ...] = (
    EasyAnimateAdapter(),
    WanAdapter(),
    LtxAdapter(),
    HunyuanVideo15Adapter(),
    CogVideoXAdapter(),
)


def supported() -> str:
    """One line naming the supported families and the pipeline classes each loads."""
    return "; ".join(f"{a.family.name} ({', '.join(sorted(a.pipeline_classes))})" for a in ADAPTERS)


def adapter_named(name: str) -> FamilyAdapter:
    found = next((adapter for adapter in ADAPTERS if adapter.family.name == name), None)
    if found is None:
        families = ", ".join(adapter.family.name for adapter in ADAPTERS)
        raise ModelUnavailable(f"no tiny model of family {name!r}: VIDGEN_MODEL=tiny:<family>, one of {families}")
    return found


def adapter_for_class(pipeline_class: str) -> FamilyAdapter:
    found = next((adapter for adapter in ADAPTERS if pipeline_class in adapter.pipeline_classes), None)
    if found is None:
        raise ModelUnavailable(
            f"unsupported model: its model_index.json names {pipeline_class}; supported: {supported()}"
        )
    return found
