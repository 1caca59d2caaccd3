"""A render's state at a step boundary, read from a running diffusers pipeline and put back into a fresh call, so the
call continues from that step bit for bit (on the same kind of device). No pipeline's `__call__` is copied.

What a video pipeline carries from one denoising step to the next (`RenderState`):
  1. the loop's `latents`;
  2. the scheduler's mutable attributes (`_step_index`, `timesteps`, `sigmas`, and for multistep solvers such as
     UniPC their history: `model_outputs`, `timestep_list`, `lower_order_nums`, `last_sample`, `this_order`);
  3. the generator's state, for samplers that draw noise in the loop (CogVideoX's DPM scheduler);
  4. loop-local values of the pipeline (`extra`): only CogVideoX+DPM has one, `old_pred_original_sample`.
Everything else (prompt embeddings, image conditioning, RoPE tables) is recomputed by the resumed call from the same
request: it is deterministic given the same seed, as long as the generator is consumed in the same order before the
loop. That is why a resume does not pass `latents=` (EasyAnimate's inpaint pipeline crashes on it, and draws
conditioning noise after the initial noise), but replays `prepare_latents` and swaps the result.

Resuming (`DiffusersState.resuming`) installs instance-level wrappers for one call:
  - `pipeline.prepare_latents`: run the original (same draws as the first run), return the checkpoint's latents;
  - `scheduler.set_timesteps`: run the original, check the schedule equals the checkpoint's, restore the scheduler's
    attributes and expose `timesteps[k:]`, which the pipeline loops over;
  - `scheduler.step`, first call: put the full schedule back (UniPC reads its length), restore the generator and
    hand CogVideoX+DPM its saved pair; LTXCondition's conditioning re-noise is wrapped the same way;
  - the pipeline module's `retrieve_timesteps`: report the full step count N.
Wrappers keep the wrapped method's signature (`functools.wraps`): pipelines inspect `scheduler.step` and
`set_timesteps` for the parameters they accept. The resumed call's step index restarts at 0: global step = k + i.

A pipeline that is not a diffusers one may bring its own access (`checkpoint_access(generator)`, as the stand-in
does); a family adapter declares what its pipeline carries beyond the four items above through the same protocol.
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from consumer.errors import CheckpointRejected

__all__ = ["DiffusersState", "RenderState", "StateAccess", "state_access", "supports_checkpoints"]

_CONFIG_KEYS = frozenset({"_internal_dict"})
_DPM_SCHEDULERS = frozenset({"CogVideoXDPMScheduler"})


@dataclass
class RenderState:
    """The denoising state after `steps_done` of `total_steps` steps, on the CPU."""

    steps_done: int
    total_steps: int
    latents: torch.Tensor
    scheduler: dict[str, Any]
    generator: torch.Tensor | None  # torch.Generator.get_state()
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class StateAccess(Protocol):
    """How one render call's state is read between two steps and put back into a fresh call."""

    def tapped(self) -> AbstractContextManager[None]:
        """Installed for the whole call: what `capture` needs besides the loop's latents (a step output to keep)."""

    def capture(self, steps_done: int, total_steps: int, latents: torch.Tensor) -> RenderState:
        """The state right after step `steps_done` ended, copied to the CPU (the render goes on with its own)."""

    def resuming(self, state: RenderState) -> AbstractContextManager[None]:
        """Within this block, the pipeline's call with the same request continues from `state`."""


def state_access(pipeline: Any, generator: torch.Generator | None) -> StateAccess | None:
    """The pipeline's own access (`checkpoint_access`), a diffusers pipeline's, or None: it cannot be checkpointed."""
    own = getattr(pipeline, "checkpoint_access", None)
    if own is not None:
        access: StateAccess = own(generator)
        return access
    if _is_diffusers_pipeline(pipeline):
        return DiffusersState(pipeline, generator)
    return None


def supports_checkpoints(pipeline: Any) -> bool:
    """Whether renders of `pipeline` can be checkpointed and resumed (the template renderer's cannot: no state)."""
    return hasattr(pipeline, "checkpoint_access") or _is_diffusers_pipeline(pipeline)


def _is_diffusers_pipeline(pipeline: Any) -> bool:
    scheduler = getattr(pipeline, "scheduler", None)
    return scheduler is not None and hasattr(scheduler, "set_timesteps") and hasattr(pipeline, "prepare_latents")


def _to_cpu(value: Any) -> Any:
    """A deep copy on the CPU: tensors (alone or in lists) copied off the device, everything else deep-copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, list):
        return [_to_cpu(item) for item in value]
    return copy.deepcopy(value)


def _scheduler_state(scheduler: Any) -> dict[str, Any]:
    """The scheduler's mutable attributes (its config is rebuilt with the pipeline)."""
    return {
        key: _to_cpu(value) for key, value in vars(scheduler).items() if key not in _CONFIG_KEYS and not callable(value)
    }


def _restore_scheduler(scheduler: Any, state: dict[str, Any], device: torch.device) -> None:
    """Set the saved attributes: instance attributes only (a multistep solver adds some as it steps), never one the
    scheduler's class defines (its methods, properties, constants) nor its config."""
    for key in state:
        if key in _CONFIG_KEYS or key.startswith("__") or hasattr(type(scheduler), key):
            raise CheckpointRejected(f"the checkpoint would overwrite the scheduler's {key!r}")
    for key, value in state.items():
        setattr(scheduler, key, _on_device(value, device))


def _on_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone().to(device)
    if isinstance(value, list):
        return [_on_device(item, device) for item in value]
    return copy.deepcopy(value)


@contextmanager
def _instance_override(target: Any, name: str, replacement: Callable[..., Any]) -> Iterator[None]:
    """Shadow a method on this instance (or a module's function) only; nests (an earlier override is put back)."""
    previous = vars(target).get(name)
    setattr(target, name, replacement)
    try:
        yield
    finally:
        if previous is None:
            delattr(target, name)
        else:
            setattr(target, name, previous)


def _wrapping(original: Callable[..., Any], implementation: Callable[..., Any]) -> Callable[..., Any]:
    """A function calling `implementation` under `original`'s name and signature."""

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return implementation(*args, **kwargs)

    return wrapper


class DiffusersState:
    """`StateAccess` of a diffusers video pipeline (EasyAnimate, Wan, LTX, HunyuanVideo-1.5, CogVideoX). A scheduler
    that draws noise in pairs with the loop (CogVideoX's DPM) also keeps its last step's `pred_original_sample`."""

    def __init__(self, pipeline: Any, generator: torch.Generator | None) -> None:
        self._pipeline = pipeline
        self._generator = generator
        self._dpm = type(pipeline.scheduler).__name__ in _DPM_SCHEDULERS
        self._last_output: Any = None

    @contextmanager
    def tapped(self) -> Iterator[None]:
        if not self._dpm:
            yield
            return
        scheduler = self._pipeline.scheduler
        original = scheduler.step

        def step(*args: Any, **kwargs: Any) -> Any:
            self._last_output = original(*args, **kwargs)
            return self._last_output

        with _instance_override(scheduler, "step", _wrapping(original, step)):
            yield

    def capture(self, steps_done: int, total_steps: int, latents: torch.Tensor) -> RenderState:
        extra: dict[str, torch.Tensor] = {}
        output = self._last_output
        if self._dpm and output is not None:
            old = output[1] if isinstance(output, tuple) else output.pred_original_sample
            extra["old_pred_original_sample"] = _to_cpu(old)
        return RenderState(
            steps_done=steps_done,
            total_steps=total_steps,
            latents=_to_cpu(latents),
            scheduler=_scheduler_state(self._pipeline.scheduler),
            generator=None if self._generator is None else self._generator.get_state(),
            extra=extra,
        )

    @contextmanager
    def resuming(self, state: RenderState) -> Iterator[None]:
        resume = _Resume(self._pipeline, state, self._generator)
        pipeline = self._pipeline
        with ExitStack() as stack:
            module = sys.modules[type(pipeline).__module__]
            original_retrieve = getattr(module, "retrieve_timesteps", None)
            if original_retrieve is not None:
                stack.enter_context(
                    _instance_override(module, "retrieve_timesteps", resume.retrieve_timesteps(original_retrieve))
                )
            original_renoise = getattr(pipeline, "add_noise_to_image_conditioning_latents", None)
            if original_renoise is not None:
                stack.enter_context(
                    _instance_override(
                        pipeline, "add_noise_to_image_conditioning_latents", resume.renoise(original_renoise)
                    )
                )
            prepare = _wrapping(resume.original_prepare, resume.prepare_latents)
            set_timesteps = _wrapping(resume.original_set_timesteps, resume.set_timesteps)
            step = _wrapping(resume.original_step, resume.step)
            stack.enter_context(_instance_override(pipeline, "prepare_latents", prepare))
            stack.enter_context(_instance_override(pipeline.scheduler, "set_timesteps", set_timesteps))
            stack.enter_context(_instance_override(pipeline.scheduler, "step", step))
            yield


class _Resume:
    """The wrappers `DiffusersState.resuming` installs; one instance per resumed call."""

    def __init__(self, pipeline: Any, state: RenderState, generator: torch.Generator | None) -> None:
        self.scheduler = pipeline.scheduler
        self.state = state
        self.generator = generator
        self.k = state.steps_done
        self.original_prepare = pipeline.prepare_latents
        self.original_set_timesteps = self.scheduler.set_timesteps
        self.original_step = self.scheduler.step
        self.first_step = True
        self.generator_restored = False
        self.replayed: torch.Tensor | None = None  # what prepare_latents made in this call (LTXCondition)
        saved = state.scheduler.get("timesteps")
        if not isinstance(saved, torch.Tensor) or not 0 < self.k < len(saved):
            raise CheckpointRejected("the checkpoint's schedule does not reach its step")
        self.timesteps = saved

    def restore_generator_once(self) -> None:
        """Put the generator where the first run had it after step k-1, before the first in-loop draw."""
        if not self.generator_restored and self.generator is not None and self.state.generator is not None:
            try:
                self.generator.set_state(self.state.generator)
            except RuntimeError as exc:
                raise CheckpointRejected(f"the checkpoint's generator state is unusable: {exc}") from exc
        self.generator_restored = True

    def prepare_latents(self, *args: Any, **kwargs: Any) -> Any:
        output = self.original_prepare(*args, **kwargs)  # draws exactly what the first run drew
        fresh = output[0] if isinstance(output, tuple) else output
        self.replayed = fresh
        saved = self.state.latents
        if saved.shape != fresh.shape:
            raise CheckpointRejected(f"checkpoint latents {tuple(saved.shape)} != this render's {tuple(fresh.shape)}")
        latents = saved.clone().to(fresh.device, fresh.dtype)
        return (latents, *output[1:]) if isinstance(output, tuple) else latents

    def set_timesteps(self, *args: Any, **kwargs: Any) -> None:
        self.original_set_timesteps(*args, **kwargs)
        device = self.scheduler.timesteps.device
        if not torch.equal(self.scheduler.timesteps.cpu(), self.timesteps.cpu()):
            raise CheckpointRejected("the checkpoint's schedule differs from this render's (steps or size)")
        _restore_scheduler(self.scheduler, self.state.scheduler, device)
        # What the pipeline reads next and loops over; `step` puts the full schedule back on its first call.
        self.scheduler.timesteps = self.timesteps[self.k :].to(device)

    def step(self, *args: Any, **kwargs: Any) -> Any:
        if self.first_step:
            self.first_step = False
            self.scheduler.timesteps = self.timesteps.clone().to(self.scheduler.timesteps.device)
            self.restore_generator_once()
            old = self.state.extra.get("old_pred_original_sample")
            if old is not None:
                # CogVideoX+DPM: step(model_output, old_pred_original_sample, timestep, timestep_back, sample, ...)
                args = (args[0], old.to(args[0].device), args[2], self.timesteps[self.k - 1], *args[4:])
        return self.original_step(*args, **kwargs)

    def renoise(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """LTXConditionPipeline re-noises its conditioning tokens from `init_latents` (taken right after
        prepare_latents, so the swapped ones): hand it the replayed initial latents, generator restored first."""

        @functools.wraps(original)
        def renoise(t: Any, init_latents: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self.restore_generator_once()
            return original(t, init_latents if self.replayed is None else self.replayed, *args, **kwargs)

        return renoise

    def retrieve_timesteps(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """With custom sigmas (LTX, HunyuanVideo-1.5) `retrieve_timesteps` returns N - k after the cut; the
        pipeline uses it as its step count (progress bar, Hunyuan's guider state). Report N."""

        @functools.wraps(original)
        def retrieve_timesteps(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, int]:
            timesteps, _count = original(*args, **kwargs)
            return timesteps, self.state.total_steps

        return retrieve_timesteps
