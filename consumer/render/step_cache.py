"""Step caching, TeaCache-style: skip the transformer's block stack on denoising steps that change little.

TeaCache (Liu et al., "Timestep Embedding Tells: It's Time to Cache for Video Diffusion Model", arXiv:2411.19108)
watches the first block's modulated input (`transformer_blocks[0].norm1(...)`, the noisy latents shifted and scaled
by the timestep embedding). Per step it takes the relative L1 change of that input against the previous step,
rescales it with a polynomial fitted per model (how the input's change predicts the output's), and accumulates it.
While the sum stays under a threshold the whole block stack is skipped and the residual (stack output minus stack
input, for the video and the text tokens) cached at the last fully computed step is added instead; once it crosses
the threshold the stack runs and the sum restarts at zero. The first and last steps always run.

The EasyAnimate pipeline runs classifier-free guidance as one batched transformer call per step, so "a call" and
"a step" are the same thing here. Where a render is in its loop comes from the pipeline's scheduler (`step_index` is
None until the first step completes), so every render starts from a clean state, including after an abandoned one.

Changes the output: off by default (`VIDGEN_STEP_CACHE_THRESHOLD=0`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

__all__ = [
    "V51_7B_COEFFICIENTS",
    "StepCacheStats",
    "StepDecision",
    "apply_step_cache",
    "decide",
    "remove_step_cache",
    "rescale",
    "step_cache_stats",
]

log = logging.getLogger(__name__)

# Upstream EasyAnimate's `get_teacache_coefficients` for "v5.1-7b" (aigc-apps/EasyAnimate,
# easyanimate/models/transformer3d.py; read in the fork rishipandey125/EasyAnimate at commit 2f75f8f3): fitted on
# videos sampled from T2V-CompBench with EasyAnimateV5.1-7b-zh-InP. numpy.poly1d order, highest power first.
V51_7B_COEFFICIENTS: tuple[float, ...] = (1.07862322, -4.19362456, 3.06725828, 0.33161686, 0.02374758)

_HEAD_HOOK = "vidgen_step_cache_head"
_BLOCK_HOOK = "vidgen_step_cache_block"


# The decision rule, free of tensors.


@dataclass(frozen=True)
class StepDecision:
    compute: bool
    accumulated: float  # the rescaled change summed since the last computed step


def rescale(change: float, coefficients: Sequence[float] = V51_7B_COEFFICIENTS) -> float:
    """The fitted polynomial at `change` (Horner's rule, numpy.polyval order)."""
    value = 0.0
    for coefficient in coefficients:
        value = value * change + coefficient
    return value


def decide(
    step: int,
    total: int,
    accumulated: float,
    change: float | None,
    *,
    threshold: float,
    coefficients: Sequence[float] = V51_7B_COEFFICIENTS,
) -> StepDecision:
    """Compute step `step` of `total`, or reuse the cached residual? `change` is the relative L1 change of the
    modulated input since the previous step (None when there is no previous step)."""
    if step == 0 or step >= total - 1 or change is None:
        return StepDecision(compute=True, accumulated=0.0)
    accumulated += rescale(change, coefficients)
    if accumulated < threshold:
        return StepDecision(compute=False, accumulated=accumulated)
    return StepDecision(compute=True, accumulated=0.0)


@dataclass(frozen=True)
class StepCacheStats:
    computed: int  # steps whose block stack ran, in the current or last render
    reused: int  # steps that added the cached residual instead
    held_bytes: int = 0  # tensors carried to the next step now (none once a render has finished)


# The wiring: diffusers hooks on the transformer blocks (the pattern of diffusers.hooks.first_block_cache).


class _RenderState:
    """What one render carries from step to step; cleared at its first step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.accumulated = 0.0
        self.previous_modulated: torch.Tensor | None = None
        self.stack_input: tuple[torch.Tensor, torch.Tensor] | None = None
        self.residual: tuple[torch.Tensor, torch.Tensor] | None = None
        self.skipping = False
        self.final = False  # the render's last step: nothing to carry past it
        self.computed = 0
        self.reused = 0

    def record_residual(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        inputs = self.stack_input
        if inputs is None:  # the head block sets it on every computed step
            raise RuntimeError("step cache: the block stack ran without its first block")
        self.stack_input = None
        if self.final:
            # Nothing reuses them: free the step's tensors before the VAE decodes and between renders.
            self.residual = self.previous_modulated = None
            return
        self.residual = (output[0] - inputs[0], output[1] - inputs[1])


class _HeadBlockHook(ModelHook):  # type: ignore[misc]  # diffusers is untyped
    """On `transformer_blocks[0]`: measures the step's change, decides, and either runs the block or returns the
    whole stack's output from the cached residual."""

    _is_stateful = True

    def __init__(
        self, state: _RenderState, pipeline: Any, threshold: float, coefficients: Sequence[float], *, is_tail: bool
    ) -> None:
        super().__init__()
        self.state = state
        self.pipeline = pipeline
        self.threshold = threshold
        self.coefficients = tuple(coefficients)
        self.is_tail = is_tail

    def new_forward(
        self,
        module: Any,  # an EasyAnimateTransformerBlock
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.state
        step, total = _position(self.pipeline.scheduler)
        if step == 0:
            state.reset()
        modulated = module.norm1(hidden_states, encoder_hidden_states, temb)[0]
        decision = self._decide(step, total, modulated)
        state.previous_modulated = modulated
        state.final = step >= total - 1
        state.accumulated = decision.accumulated
        residual = None if decision.compute else state.residual
        state.skipping = residual is not None
        if residual is not None:
            state.reused += 1
            output = (hidden_states + residual[0], encoder_hidden_states + residual[1])
        else:
            state.computed += 1
            state.stack_input = (hidden_states, encoder_hidden_states)
            output = self.fn_ref.original_forward(hidden_states, encoder_hidden_states, temb, image_rotary_emb)
            if self.is_tail:
                state.record_residual(output)
        if step >= total - 1:
            log.debug("step cache: %d steps computed, %d reused", state.computed, state.reused)
        return output

    @torch.compiler.disable  # type: ignore[untyped-decorator]  # a host-side decision: .item() breaks the graph
    def _decide(self, step: int, total: int, modulated: torch.Tensor) -> StepDecision:
        previous = self.state.previous_modulated
        change = None
        if previous is not None and previous.shape == modulated.shape:
            change = ((modulated - previous).abs().mean() / previous.abs().mean()).item()
        return decide(
            step, total, self.state.accumulated, change, threshold=self.threshold, coefficients=self.coefficients
        )

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.state.reset()
        return module


class _BlockHook(ModelHook):  # type: ignore[misc]  # diffusers is untyped
    """On every later block: passes its input through while the head block is reusing, else runs the block (and the
    last one records the stack's residual)."""

    def __init__(self, state: _RenderState, *, is_tail: bool) -> None:
        super().__init__()
        self.state = state
        self.is_tail = is_tail

    def new_forward(
        self,
        module: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.state.skipping:
            return hidden_states, encoder_hidden_states
        output: tuple[torch.Tensor, torch.Tensor] = self.fn_ref.original_forward(
            hidden_states, encoder_hidden_states, temb, image_rotary_emb
        )
        if self.is_tail:
            self.state.record_residual(output)
        return output


def apply_step_cache(pipeline: Any, threshold: float, coefficients: Sequence[float] = V51_7B_COEFFICIENTS) -> None:
    """Hook step caching into an EasyAnimate pipeline's transformer. `threshold` > 0: higher skips more steps."""
    if threshold <= 0:
        raise ValueError(f"step cache threshold must be positive, got {threshold}")
    blocks = list(pipeline.transformer.transformer_blocks)
    state = _RenderState()
    head = _HeadBlockHook(state, pipeline, threshold, coefficients, is_tail=len(blocks) == 1)
    HookRegistry.check_if_exists_or_initialize(blocks[0]).register_hook(head, _HEAD_HOOK)
    for index, block in enumerate(blocks[1:], start=1):
        hook = _BlockHook(state, is_tail=index == len(blocks) - 1)
        HookRegistry.check_if_exists_or_initialize(block).register_hook(hook, _BLOCK_HOOK)


def remove_step_cache(pipeline: Any) -> None:
    """Back to the exact path: unhook every block (a no-op without a step cache)."""
    for block in pipeline.transformer.transformer_blocks:
        registry = getattr(block, "_diffusers_hook", None)
        if registry is not None:
            for name in (_HEAD_HOOK, _BLOCK_HOOK):
                registry.remove_hook(name, recurse=False)


def step_cache_stats(pipeline: Any) -> StepCacheStats | None:
    """Steps computed and reused in the current or last render; None without a step cache."""
    registry = getattr(pipeline.transformer.transformer_blocks[0], "_diffusers_hook", None)
    head = registry.get_hook(_HEAD_HOOK) if registry is not None else None
    if head is None:
        return None
    state = head.state
    carried = [state.previous_modulated, *(state.residual or ()), *(state.stack_input or ())]
    held = sum(tensor.numel() * tensor.element_size() for tensor in carried if tensor is not None)
    return StepCacheStats(computed=state.computed, reused=state.reused, held_bytes=held)


def _position(scheduler: Any) -> tuple[int, int]:
    """(index of the step being denoised, steps in this render), from the scheduler the pipeline is stepping."""
    begin = scheduler.begin_index or 0
    index = scheduler.step_index
    return (0 if index is None else index - begin), len(scheduler.timesteps) - begin
