"""Step caching with cache-dit's DBCache (`cache_dit.enable_cache`), on every transformer of a model of any family
(cache-dit 1.5 has block adapters for EasyAnimate, Wan, LTX-Video, HunyuanVideo-1.5 and CogVideoX).

On each denoising step the first transformer block always runs; when the relative L1 change of its output residual
since the previous step stays under the threshold (`VIDGEN_STEP_CACHE_THRESHOLD`, cache-dit's
`residual_diff_threshold`), the remaining blocks are skipped and the residual they added at the last computed step is
added instead. The first `WARMUP_STEPS` steps always run. Where classifier-free guidance runs as two transformer calls
(Wan, HunyuanVideo-1.5) each branch is cached on its own.

Enabled on the transformer, not the pipeline: cache-dit's pipeline-level call patches the pipeline *class* and, with
two pipelines sharing one transformer (image- and text-to-video), leaks one render's cache into the other's. So each
render refreshes the transformer's cache context first (`StepCache.begin`), and when its last step is done the
context is refreshed again (`StepCache.finish`): the cached residuals are freed before the VAE decodes, the render's
counts kept. Changes the output: off by default (`VIDGEN_STEP_CACHE_THRESHOLD=0`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["FIRST_BLOCKS", "WARMUP_STEPS", "StepCache", "StepCacheStats", "has_step_cache"]

FIRST_BLOCKS = 1  # cache-dit's Fn: blocks that always run and whose residual decides
WARMUP_STEPS = 4  # steps that always run, at the start of every render


@dataclass(frozen=True)
class StepCacheStats:
    computed: int  # steps whose whole block stack ran, in the current or last render
    reused: int  # steps that added the cached residual instead (with two-call guidance: of the cond branch)
    held_bytes: int = 0  # cached tensors held now (none once a render's last step is done)


class StepCache:
    """DBCache on `transformers` (each model's distinct ones), for one render at a time."""

    def __init__(self, transformers: Sequence[torch.nn.Module], threshold: float) -> None:
        if threshold <= 0:
            raise ValueError(f"step cache threshold must be positive, got {threshold}")
        cache_dit = _cache_dit()
        self._transformers = list(transformers)
        self._steps = 0
        self._last: StepCacheStats | None = None
        config = cache_dit.DBCacheConfig(
            Fn_compute_blocks=FIRST_BLOCKS,
            Bn_compute_blocks=0,
            residual_diff_threshold=threshold,
            max_warmup_steps=WARMUP_STEPS,
        )
        for transformer in self._transformers:
            cache_dit.enable_cache(transformer, cache_config=config)

    def begin(self, steps: int) -> None:
        """Before a render of `steps` denoising steps: a fresh context (nothing carried from the last render)."""
        self._steps = steps
        self._last = None
        self._refresh()

    def finish(self) -> None:
        """After a render's last step: its counts kept, its cached tensors freed."""
        counted = self._counted()
        self._refresh()
        self._last = dataclasses.replace(counted, held_bytes=sum(_held_bytes(t) for t in self._transformers))

    def stats(self) -> StepCacheStats:
        """Counts of the last finished render, or of the one in progress."""
        return self._last if self._last is not None else self._counted()

    def remove(self) -> None:
        """Back to the exact path."""
        cache_dit = _cache_dit()
        for transformer in self._transformers:
            cache_dit.disable_cache(transformer)

    def _refresh(self) -> None:
        cache_dit = _cache_dit()
        for transformer in self._transformers:
            cache_dit.refresh_context(transformer, num_inference_steps=max(self._steps, 1))

    def _counted(self) -> StepCacheStats:
        cache_dit = _cache_dit()
        reused = 0
        held = 0
        for transformer in self._transformers:
            for stats in cache_dit.summary(transformer, details=False, logging=False):
                reused = max(reused, len(stats.cached_steps))
            held += _held_bytes(transformer)
        return StepCacheStats(computed=self._steps - reused, reused=reused, held_bytes=held)


def has_step_cache(transformer: Any) -> bool:
    """Whether cache-dit is enabled on this transformer (or the one a compiled module wraps)."""
    return bool(getattr(getattr(transformer, "_orig_mod", transformer), "_is_cached", False))


def _held_bytes(transformer: Any) -> int:
    manager = getattr(transformer, "_context_manager", None)
    total = 0
    for name in getattr(transformer, "_context_names", []):
        buffers = manager.get_context(name).buffers if manager is not None else {}
        total += sum(t.numel() * t.element_size() for t in buffers.values() if isinstance(t, torch.Tensor))
    return total


def _cache_dit() -> Any:
    """cache-dit, imported when first used (about 1.5 s). At import it gives its loggers a handler of its own on
    stdout and stops them propagating: undone, so its records go wherever the process sends everyone's (a worker's
    JSON lines, a benchmark's stderr) at the level the entry point gives them, and stdout stays the benchmarks'
    report."""
    import cache_dit

    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name == "CACHE_DIT" or name.startswith("cache_dit")):
            logger.handlers.clear()
            logger.propagate = True
            logger.setLevel(logging.NOTSET)  # as the entry point sets `cache_dit` (WARNING unless DEBUG)
    return cache_dit
