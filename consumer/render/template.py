"""The template renderer (`VIDGEN_MODEL=template`): a product video with no diffusion model, on a CPU.

It is a pipeline like the stand-in: it takes the diffusers keyword arguments the renderer passes, calls the step
callback once per step (so progress, deadlines and cancellation behave as with a model) and returns float frames in
[0, 1]. What it renders:

- From a start image, a Ken Burns move: a zoom from the image's centred cover crop (the very first frame) towards
  a point chosen from the seed, eased in and out. Every frame is resampled from the start image with a float crop
  box (`Image.resize(box=...)`: bicubic, antialiased, sub-pixel offsets), never cropped on whole pixels, so the
  motion has no jitter. The image is resampled at the resolution the tightest crop needs (`source_size`), not from
  the frame-sized tensor, when the renderer passes it as `source_image`; otherwise the frame is zoomed.
- Without a start image, a title card: the prompt wrapped and centred on a gradient drawn from the seed, with the
  same zoom towards its centre so the text stays whole and centred in every frame. Pillow's bundled font draws
  ASCII only: other characters are spelled plainly (é as e, ß as ss, curly quotes as straight ones) or
  left out, never drawn as boxes (`title_words`).

Same arguments and seed, same frames. Cost: a few milliseconds of one core per 512x512 frame.
"""

from __future__ import annotations

import colorsys
import functools
import math
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "MAX_ZOOM",
    "Move",
    "TemplatePipeline",
    "crop_boxes",
    "ease",
    "plan_move",
    "source_size",
    "title_words",
    "wrap_words",
]

MAX_ZOOM = 1.25  # the tightest crop is the frame at 1/MAX_ZOOM of the start image's cover crop, per side
_ZOOM_PER_FRAME = (0.005, 0.0075)  # seeded: 25 frames end between 1.12x and 1.18x
_PAN_REACH = (0.7, 1.0)  # seeded: how far towards the edge of the room the zoom leaves the move ends
_EASE_SHARE = 0.6  # smoothstep's share of the easing; the rest is linear, so no frame repeats the previous one
_TEXT_AREA = 0.8  # the title's share of the frame's width and height at the tightest crop
_LINE_SPACING = 1.25
_MIN_FONT_PX = 12
# Pillow's bundled font (Aileron) draws ASCII only. Letters it lacks are written with the ones it has where a plain
# spelling exists (NFKD base letters, this table); anything else is left out rather than drawn as a box.
_PLAIN_SPELLING = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...",
        "\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE", "\u00f8": "o", "\u00d8": "O",
        "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u0110": "D", "\u00f0": "d", "\u00d0": "D", "\u00fe": "th",
        "\u00de": "Th", "\u0131": "i",
    }
)  # fmt: skip

Box = tuple[float, float, float, float]  # left, top, right, bottom
StepCallback = Callable[[Any, int, Any, dict[str, Any]], Any]


@dataclass(frozen=True)
class Move:
    zoom: float  # of the last frame over the first, >= 1
    pan: tuple[float, float]  # where the last crop's centre ends, as a fraction of the first crop's width/height


def source_size(width: int, height: int) -> tuple[int, int]:
    """The start image a width x height video is best rendered from: its cover crop at MAX_ZOOM times the frame, so
    even the tightest crop is a downscale."""
    return math.ceil(width * MAX_ZOOM), math.ceil(height * MAX_ZOOM)


def plan_move(seed: int, num_frames: int, *, pan: bool) -> Move:
    """The move for this seed: a zoom that grows with the length of the video (capped at MAX_ZOOM), towards a point
    in a seeded direction (or the centre), chosen so that every crop stays inside the first one."""
    rng = np.random.default_rng(seed)
    zoom = min(MAX_ZOOM, 1.0 + rng.uniform(*_ZOOM_PER_FRAME) * max(0, num_frames - 1))
    angle, reach = rng.uniform(0.0, 2 * math.pi), rng.uniform(*_PAN_REACH)
    room = reach * (1.0 - 1.0 / zoom) / 2 if pan else 0.0  # how far the last crop's centre may move
    return Move(zoom=zoom, pan=(room * math.cos(angle), room * math.sin(angle)))


def ease(t: float) -> float:
    """0 -> 0, 1 -> 1, slow at both ends but never still: a blend of smoothstep and linear time."""
    return (1.0 - _EASE_SHARE) * t + _EASE_SHARE * t * t * (3.0 - 2.0 * t)


def crop_boxes(move: Move, num_frames: int) -> list[Box]:
    """Each frame's crop, as fractions of the first crop: geometric zoom (a steady apparent speed), linear pan.
    The first is (0, 0, 1, 1); every box lies inside it, since 1 - zoom^-s >= s (1 - 1/zoom) for s in [0, 1]."""
    boxes = []
    for index in range(num_frames):
        progress = ease(index / (num_frames - 1)) if num_frames > 1 else 0.0
        size = move.zoom**-progress
        centre_x, centre_y = 0.5 + progress * move.pan[0], 0.5 + progress * move.pan[1]
        boxes.append((centre_x - size / 2, centre_y - size / 2, centre_x + size / 2, centre_y + size / 2))
    return boxes


def wrap_words(words: list[str], fits: Callable[[str], bool]) -> list[str]:
    """Greedy wrapping: as many words per line as fit; a word too long for a line alone is cut where it must be."""
    lines: list[str] = []
    for word in words:
        if lines and fits(candidate := f"{lines[-1]} {word}"):
            lines[-1] = candidate
            continue
        piece = ""
        for char in word:
            if piece and not fits(piece + char):
                lines.append(piece)
                piece = ""
            piece += char
        lines.append(piece)
    return lines


def title_words(prompt: str, drawable: Callable[[str], bool] | None = None) -> list[str]:
    """The prompt's words as the title card can draw them: each character the font lacks replaced by its plain
    spelling (curly quotes and dashes by ASCII ones, accented letters by their base letters, ß by ss...) or, when
    there is none (other scripts, emoji, joiners), by a space. `drawable` defaults to the bundled font's coverage."""
    drawable = drawable or _bundled_font_draws
    kept = []
    for char in prompt.translate(_PLAIN_SPELLING):
        if char.isspace() or drawable(char):
            kept.append(char)
            continue
        bases = [base for base in unicodedata.normalize("NFKD", char) if not unicodedata.combining(base)]
        kept.append("".join(bases) if bases and all(map(drawable, bases)) else " ")
    return "".join(kept).split()


class TemplatePipeline:
    """A renderer pipeline with no model: load it once like any other, call it like a diffusers pipeline. Its videos
    are the simpler kind: `degraded` makes the worker's results say so (`model: "template"`, `degraded: true`)."""

    degraded = True
    source_size = staticmethod(source_size)

    def to(self, *_: Any, **__: Any) -> TemplatePipeline:
        return self

    def set_progress_bar_config(self, **_: Any) -> None:
        """Nothing to configure; present so the loader treats it like a pipeline."""

    def __call__(
        self,
        *,
        prompt: str,
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        generator: torch.Generator,
        callback_on_step_end: StepCallback,
        source_image: Image.Image | None = None,
        video: torch.Tensor | None = None,
        mask_video: torch.Tensor | None = None,
        **_: Any,
    ) -> SimpleNamespace:
        """Frames (1, num_frames, height, width, 3) float32 in [0, 1]. The start image is `source_image` when given
        (any size; `source_size` is what it needs), else the first frame of `video` where `mask_video` keeps it
        (0 = keep, as `get_image_to_video_latent` builds it); with neither, a title card of `prompt`. The renderer
        passes `source_image` alone (None for a title card): a start video would be F frames of one image."""
        seed = int(generator.initial_seed())
        if source_image is None and video is not None and mask_video is not None and not mask_video[:, :, 0].any():
            source_image = _frame_image(video)
        if source_image is None:
            working, cover = _title_card(prompt, width, height, seed), None
        else:
            working, cover = _working_image(source_image.convert("RGB"), width, height)
        move = plan_move(seed, num_frames, pan=source_image is not None)
        left, top, box_width, box_height = cover or (0.0, 0.0, float(working.width), float(working.height))
        output = np.empty((1, num_frames, height, width, 3), dtype=np.float32)
        boxes = crop_boxes(move, num_frames)
        for step, frames in enumerate(_groups(num_frames, max(1, num_inference_steps))):
            for index in frames:
                x0, y0, x1, y1 = boxes[index]
                box = (left + x0 * box_width, top + y0 * box_height, left + x1 * box_width, top + y1 * box_height)
                frame = working.resize((width, height), Image.Resampling.BICUBIC, box=box)
                np.divide(np.asarray(frame), 255, out=output[0, index], dtype=np.float32)
            callback_on_step_end(self, step, None, {})
        return SimpleNamespace(frames=output)


def _groups(count: int, steps: int) -> Iterator[range]:
    """`count` frames in `steps` consecutive groups as even as can be (some empty when steps > count)."""
    for step in range(steps):
        yield range(step * count // steps, (step + 1) * count // steps)


def _frame_image(video: torch.Tensor) -> Image.Image:
    """The start frame of a (1, 3, F, H, W) tensor in [0, 1] as an 8-bit image."""
    pixels = video[0, :, 0].permute(1, 2, 0).float().numpy()
    return Image.fromarray(np.rint(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8), mode="RGB")


def _working_image(source: Image.Image, width: int, height: int) -> tuple[Image.Image, Box]:
    """The image to crop every frame from and its cover box (left, top, width, height), as `imaging.fit_image`
    crops: a source with more pixels than the tightest crop uses is cut to its cover box and scaled down once."""
    scale = max(width / source.width, height / source.height)
    box_width, box_height = width / scale, height / scale
    left, top = (source.width - box_width) / 2, (source.height - box_height) / 2
    needed = source_size(width, height)
    if box_width <= needed[0] + 1:
        return source, (left, top, box_width, box_height)
    reduced = source.resize(
        needed, Image.Resampling.LANCZOS, box=(left, top, left + box_width, top + box_height), reducing_gap=3.0
    )
    return reduced, (0.0, 0.0, float(needed[0]), float(needed[1]))


def _title_card(prompt: str, width: int, height: int, seed: int) -> Image.Image:
    """The prompt, wrapped and centred, on a dark diagonal gradient in seeded colours, drawn at `source_size` so
    the zoom stays sharp. The text fits the centre that even the tightest crop shows."""
    card_width, card_height = source_size(width, height)
    hue = np.random.default_rng([seed, 1]).uniform()
    light = np.array(colorsys.hsv_to_rgb(hue, 0.55, 0.42)) * 255
    dark = np.array(colorsys.hsv_to_rgb((hue + 0.08) % 1.0, 0.65, 0.16)) * 255
    ramp = (np.linspace(0, 0.5, card_width)[None, :] + np.linspace(0, 0.5, card_height)[:, None])[..., None]
    pixels = np.rint(light * (1 - ramp) + dark * ramp).astype(np.uint8)
    card = Image.fromarray(pixels, mode="RGB")
    _draw_title(
        ImageDraw.Draw(card), title_words(prompt), centre=(card_width / 2, card_height / 2), frame=(width, height)
    )
    return card


def _draw_title(
    draw: ImageDraw.ImageDraw, words: list[str], *, centre: tuple[float, float], frame: tuple[int, int]
) -> None:
    """Largest font size (down to _MIN_FONT_PX) whose wrapped lines fit the text area; past that, an ellipsis."""
    area_width, area_height = _TEXT_AREA * frame[0], _TEXT_AREA * frame[1]
    size = max(_MIN_FONT_PX, round(frame[1] / 9))
    while True:
        font = ImageFont.load_default(size=size)

        def fits(line: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont = font) -> bool:
            return draw.textlength(line, font=font) <= area_width

        lines = wrap_words(words, fits)
        line_height = size * _LINE_SPACING
        room = max(1, int((area_height - size) // line_height) + 1)
        if len(lines) <= room or size == _MIN_FONT_PX:
            break
        size = max(_MIN_FONT_PX, int(size * 0.9))
    if len(lines) > room:
        last = lines[room - 1]
        while last and not fits(last + "..."):
            last = last[:-1]
        lines = [*lines[: room - 1], last.rstrip() + "..."]
    shadow = max(1, size // 20)
    top = centre[1] - ((len(lines) - 1) * line_height + size) / 2
    for row, line in enumerate(lines):
        x, y = centre[0] - draw.textlength(line, font=font) / 2, top + row * line_height
        draw.text((x + shadow, y + shadow), line, font=font, fill=(0, 0, 0))
        draw.text((x, y), line, font=font, fill=(246, 244, 238))


@functools.lru_cache(maxsize=4096)  # bounded: prompts may bring any of Unicode's code points
def _bundled_font_draws(char: str) -> bool:
    """Whether Pillow's bundled font has a glyph for `char`: a missing one renders as the font's .notdef box."""
    font, missing = _notdef()
    glyph = font.getmask(char)
    return (glyph.size, bytes(glyph)) != missing


@functools.cache
def _notdef() -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, tuple[tuple[int, int], bytes]]:
    """The bundled font at a probing size, and how it draws a code point it has no glyph for."""
    font = ImageFont.load_default(size=16)
    box = font.getmask("\uffff")
    return font, (box.size, bytes(box))
