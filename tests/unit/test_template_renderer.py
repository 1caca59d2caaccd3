"""The template renderer, judged on what a person sees: frames rendered, encoded to H.264 with the worker's own
encoder, decoded with PyAV. Pure: no broker, no S3.

Motion is measured by phase correlation (numpy FFT) between consecutive decoded frames: the Ken Burns move must
never reverse and its speed must change little from one frame to the next. A renderer that crops on whole pixels
(what makes ffmpeg's zoompan jitter) fails the same check; the last test shows the check can tell.
"""

from __future__ import annotations

import io
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import pytest
import torch
from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from consumer.errors import RenderTimeout
from consumer.images.decoding import fit_image
from consumer.render.render_spec import RenderSpec
from consumer.render.renderer import Renderer
from consumer.render.template import (
    MAX_ZOOM,
    TemplatePipeline,
    crop_boxes,
    ease,
    plan_move,
    source_size,
    title_words,
    wrap_words,
)
from consumer.worker.video_encoding import encode_mp4

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared

WIDTH, HEIGHT, FRAMES, FPS = 512, 512, 25, 8
PROMPT = "A red sneaker slowly turning on a white studio table, soft light, product shot"

Frames = NDArray[np.uint8]


# --- what the tests look at -------------------------------------------------------------------------------------------


def photo(width: int = 1600, height: int = 1200) -> Image.Image:
    """A full-resolution 4:3 product shot: studio gradient, a soft shadow, a shoe-like shape with stitching, and fine
    grain, so that frames have both edges and texture, like a photograph."""
    ramp = np.linspace(235, 170, height)[:, None, None] * np.ones((1, width, 3))
    grain = np.random.default_rng(5).normal(0, 6, (height // 8, width // 8, 3))
    grain = np.asarray(Image.fromarray(np.uint8(np.clip(grain + 128, 0, 255))).resize((width, height))) - 128.0
    image = Image.fromarray(np.uint8(np.clip(ramp + grain, 0, 255)))
    draw = ImageDraw.Draw(image)
    w, h = width, height
    draw.ellipse([w * 0.2, h * 0.66, w * 0.8, h * 0.76], fill=(140, 140, 148))
    image = image.filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle([w * 0.22, h * 0.46, w * 0.78, h * 0.66], radius=h // 16, fill=(196, 38, 44))
    draw.rounded_rectangle([w * 0.27, h * 0.32, w * 0.52, h * 0.52], radius=h // 20, fill=(176, 30, 40))
    draw.rectangle([w * 0.22, h * 0.62, w * 0.78, h * 0.67], fill=(246, 246, 246))
    for index in range(7):
        x = w * (0.3 + 0.03 * index)
        draw.line([(x, h * 0.36), (x + w * 0.03, h * 0.47)], fill=(250, 250, 250), width=w // 200)
    return image


def render(
    image: Image.Image | None,
    *,
    source_image: Image.Image | None = None,
    seed: int = 7,
    size: tuple[int, int, int] = (WIDTH, HEIGHT, FRAMES),
    prompt: str = PROMPT,
    steps: int = 30,
    on_step: Callable[[int], None] = lambda _: None,
) -> NDArray[np.float32]:
    """Call the pipeline exactly as `Renderer._denoise` does (video and mask from `get_image_to_video_latent`)."""
    width, height, frames = size
    video, mask = get_image_to_video_latent(image, None, frames, (height, width))

    def callback(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        on_step(step)
        return tensors

    output = TemplatePipeline()(
        prompt=prompt,
        negative_prompt="",
        num_frames=frames,
        video=video,
        mask_video=mask,
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=torch.Generator(device="cpu").manual_seed(seed),
        output_type="np",
        callback_on_step_end=callback,
        source_image=source_image,
    )
    result: NDArray[np.float32] = output.frames[0]
    return result


def to_uint8(frames: NDArray[np.float32]) -> Frames:
    return np.rint(frames * 255).astype(np.uint8)


def watch(frames: Frames) -> Frames:
    """What a viewer gets: the frames through the worker's H.264 encoder, decoded again."""
    with av.open(io.BytesIO(encode_mp4(frames, fps=FPS)), mode="r") as container:
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    return decoded.astype(np.uint8, copy=False)


def psnr(a: NDArray[Any], b: NDArray[Any]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def phase_shift(before: Frames, after: Frames) -> tuple[float, float]:
    """(dx, dy) in pixels such that `after` is `before` moved by it: phase correlation of the grey levels
    (Hann-windowed against wrap-around), the correlation surface smoothed by a Gaussian of 1.5 px (so a zoom's spread
    of displacements gives one peak at their mean instead of several), parabolic sub-pixel peak."""
    a, b = (frame.astype(np.float64).mean(axis=2) for frame in (before, after))
    window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    cross = np.fft.fft2(b * window) * np.conj(np.fft.fft2(a * window))
    frequencies = np.fft.fftfreq(a.shape[0])[:, None] ** 2 + np.fft.fftfreq(a.shape[1])[None, :] ** 2
    smoothing = np.exp(-frequencies * (2 * np.pi * 1.5) ** 2 / 2)
    surface = np.fft.fftshift(np.fft.ifft2(cross / (np.abs(cross) + 1e-12) * smoothing).real)
    row, col = np.unravel_index(np.argmax(surface), surface.shape)

    def refine(minus: float, peak: float, plus: float) -> float:
        return 0.5 * (minus - plus) / (minus - 2 * peak + plus)

    dx = col - surface.shape[1] // 2 + refine(surface[row, col - 1], surface[row, col], surface[row, col + 1])
    dy = row - surface.shape[0] // 2 + refine(surface[row - 1, col], surface[row, col], surface[row + 1, col])
    return float(dx), float(dy)


def motion(frames: Frames) -> NDArray[np.float64]:
    """Each frame's shift from the previous one, projected on the move's overall direction."""
    shifts = np.array([phase_shift(frames[index], frames[index + 1]) for index in range(len(frames) - 1)])
    direction = shifts.sum(axis=0) / np.linalg.norm(shifts.sum(axis=0))
    projected: NDArray[np.float64] = shifts @ direction
    return projected


def assert_smooth(speeds: NDArray[np.float64]) -> None:
    """Never reverses (every step forward by a visible amount) and each step within 25% of the fastest of the one
    before."""
    assert speeds.min() > 0.05, f"the move stops or reverses: {np.round(speeds, 2).tolist()}"
    jumps = np.abs(np.diff(speeds))
    assert jumps.max() <= 0.25 * speeds.max(), f"speed jumps between frames: {np.round(speeds, 2).tolist()}"


# --- fixtures ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def original() -> Image.Image:
    return photo()


@pytest.fixture(scope="module")
def rendered(original: Image.Image) -> NDArray[np.float32]:
    """The worker's path once the renderer hands the start image over at `source_size` (see the module's note)."""
    return render(fit_image(original, WIDTH, HEIGHT), source_image=fit_image(original, *source_size(WIDTH, HEIGHT)))


@pytest.fixture(scope="module")
def watched(rendered: NDArray[np.float32]) -> Frames:
    return watch(to_uint8(rendered))


@pytest.fixture(scope="module")
def speeds(watched: Frames) -> NDArray[np.float64]:
    return motion(watched)


# --- what a person sees -----------------------------------------------------------------------------------------------


def test_first_frame_is_the_start_images_centred_crop(original: Image.Image, watched: Frames) -> None:
    crop = np.asarray(fit_image(original, WIDTH, HEIGHT))
    assert watched.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert psnr(watched[0], crop) > 30


def test_every_frame_moves(watched: Frames) -> None:
    changes = [np.abs(watched[i + 1].astype(np.int16) - watched[i]).mean() for i in range(len(watched) - 1)]
    assert min(changes) > 0.5, f"mean absolute change per frame (8-bit levels): {np.round(changes, 2).tolist()}"


def test_motion_is_smooth_and_never_reverses(speeds: NDArray[np.float64]) -> None:
    assert_smooth(speeds)
    assert speeds.sum() > 10  # a move a viewer notices: pixels of pan over the video


@pytest.mark.parametrize("seed", [1, 5])
def test_motion_is_smooth_whatever_the_seed(original: Image.Image, seed: int) -> None:
    source = fit_image(original, *source_size(WIDTH, HEIGHT))
    assert_smooth(motion(watch(to_uint8(render(fit_image(original, WIDTH, HEIGHT), source_image=source, seed=seed)))))


def test_eased_in_and_out(speeds: NDArray[np.float64]) -> None:
    middle = speeds[len(speeds) // 3 : 2 * len(speeds) // 3].mean()
    assert speeds[0] < 0.7 * middle and speeds[-1] < 0.7 * middle


def test_the_full_resolution_original_gives_the_same_video(
    original: Image.Image, rendered: NDArray[np.float32]
) -> None:
    """A source of any size is cut to its cover crop at `source_size` first: the same frames within rounding."""
    from_original = render(fit_image(original, WIDTH, HEIGHT), source_image=original)
    assert psnr(to_uint8(from_original), to_uint8(rendered)) > 40


def test_without_the_source_image_the_start_frame_is_zoomed(original: Image.Image, watched: Frames) -> None:
    """Today's renderer passes only the frame-sized tensor: the same move, softer only where it zooms in."""
    fitted = fit_image(original, WIDTH, HEIGHT)
    frames = watch(to_uint8(render(fitted)))
    assert psnr(frames[0], np.asarray(fitted)) > 30
    assert_smooth(motion(frames))
    assert psnr(frames[-1], watched[-1]) > 28


def test_same_seed_same_frames_other_seed_other_move(original: Image.Image, rendered: NDArray[np.float32]) -> None:
    source = fit_image(original, *source_size(WIDTH, HEIGHT))
    again = render(fit_image(original, WIDTH, HEIGHT), source_image=source)
    other = render(fit_image(original, WIDTH, HEIGHT), source_image=source, seed=8)
    assert again.tobytes() == rendered.tobytes()
    assert np.array_equal(other[0], rendered[0])  # every move starts from the cover crop
    assert not np.array_equal(other[-1], rendered[-1])


def test_a_frame_that_is_not_square_keeps_the_cover_crop(original: Image.Image) -> None:
    fitted = fit_image(original, 384, 640)  # portrait frame from a landscape photo
    frames = watch(to_uint8(render(fitted, source_image=original, size=(384, 640, 9))))
    assert frames.shape == (9, 640, 384, 3)
    assert psnr(frames[0], np.asarray(fitted)) > 30


# --- the title card (no start image) ----------------------------------------------------------------------------------


def text_mask(frame: Frames) -> NDArray[np.bool_]:
    """Near-white pixels: the title's letters (the gradient stays below mid-grey)."""
    mask: NDArray[np.bool_] = frame.min(axis=2) > 200
    return mask


def test_title_card_shows_the_prompt_wrapped_and_centred() -> None:
    frames = watch(to_uint8(render(None)))
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    for index in (0, FRAMES // 2, FRAMES - 1):
        letters = text_mask(frames[index])
        rows, cols = np.nonzero(letters)
        assert letters.mean() > 0.01, "no text on the card"
        assert abs(cols.mean() - WIDTH / 2) < 0.05 * WIDTH and abs(rows.mean() - HEIGHT / 2) < 0.05 * HEIGHT
        assert cols.min() > 0.05 * WIDTH and cols.max() < 0.95 * WIDTH  # whole, with a margin, in every frame
        assert rows.min() > 0.05 * HEIGHT and rows.max() < 0.95 * HEIGHT
        lines = np.count_nonzero(np.diff(letters.any(axis=1).astype(np.int8)) == 1)
        assert lines >= 3, "the prompt is wrapped over several lines"
    corners = frames[0][[0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.max() < 160  # the gradient behind the text is dark
    changes = [np.abs(frames[i + 1].astype(np.int16) - frames[i]).mean() for i in range(FRAMES - 1)]
    assert min(changes) > 0.1


def test_title_card_of_a_very_long_prompt_stays_inside_a_small_frame() -> None:
    frames = to_uint8(render(None, prompt="word " * 199 + "x" * 300, size=(256, 256, 5)))
    rows, cols = np.nonzero(text_mask(frames[-1]))
    assert rows.size > 0
    assert cols.min() > 0.05 * 256 and cols.max() < 0.95 * 256 and rows.min() > 0.05 * 256 and rows.max() < 0.95 * 256


def test_title_card_draws_no_missing_glyph_boxes() -> None:
    """The bundled font draws ASCII only: accents fall back to base letters, other scripts are left out."""
    accented, plain = (
        to_uint8(render(None, prompt=text, size=(256, 256, 2))) for text in ("Crème brûlée", "Creme brulee")
    )
    assert np.array_equal(accented, plain)
    chinese = to_uint8(render(None, prompt="红色运动鞋", size=(256, 256, 2)))
    assert not text_mask(chinese[0]).any()


def test_title_card_colours_follow_the_seed() -> None:
    first, again, other = (to_uint8(render(None, seed=seed, size=(256, 256, 3))) for seed in (1, 1, 2))
    assert np.array_equal(first, again)
    assert not np.array_equal(first[0], other[0])


# --- the renderer interface -------------------------------------------------------------------------------------------


def test_one_callback_per_step_frames_spread_over_them() -> None:
    steps: list[int] = []
    frames = render(None, size=(256, 256, 9), steps=4, on_step=steps.append)
    assert steps == [0, 1, 2, 3]
    assert frames.shape == (9, 256, 256, 3) and frames.dtype == np.float32
    assert frames.min() >= 0.0 and frames.max() <= 1.0


def test_a_callback_that_raises_stops_the_render() -> None:
    """How the renderer abandons a cancelled job: no frame is made after the step that raised."""

    class Stop(Exception):
        pass

    steps: list[int] = []

    def on_step(step: int) -> None:
        steps.append(step)
        if step == 1:
            raise Stop

    with pytest.raises(Stop):
        render(None, size=(256, 256, 9), steps=4, on_step=on_step)
    assert steps == [0, 1]


async def test_plugs_into_todays_renderer(make_renderer: Callable[[object], Renderer], original: Image.Image) -> None:
    renderer = make_renderer(TemplatePipeline())
    await renderer.start()
    spec = RenderSpec(
        prompt=PROMPT, negative_prompt="", width=256, height=256, num_frames=9, steps=6, guidance_scale=5.0, seed=3
    )
    progress: list[tuple[int, int]] = []
    fitted = fit_image(original, 256, 256)
    done = await renderer.render(spec, fitted, timeout_s=60, on_progress=lambda *step: progress.append(step))
    assert done.frames.shape == (9, 256, 256, 3) and done.frames.dtype == np.uint8
    assert psnr(done.frames[0], np.asarray(fitted)) > 45  # exact but for the float round trip
    await _wait_for(lambda: len(progress) == 6)
    assert progress == [(step, 6) for step in range(1, 7)]
    with pytest.raises(RenderTimeout):
        await renderer.render(spec, None, timeout_s=1e-9)
    assert renderer.state == "ready"


async def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Progress reaches the loop through call_soon_threadsafe: poll the condition, yielding to the loop."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0)


def test_one_512x512x25_render(original: Image.Image, record_property: Callable[[str, object], None]) -> None:
    """Cost is measured by bench/template_render.py; here one render is timed and recorded, never asserted on."""
    source = fit_image(original, *source_size(WIDTH, HEIGHT))
    started = time.process_time()
    frames = render(fit_image(original, WIDTH, HEIGHT), source_image=source)
    record_property("cpu_s", round(time.process_time() - started, 3))
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3)


# --- the pure parts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("frames", [2, 9, 25, 49])
def test_every_crop_lies_inside_the_first_and_zooms_steadily(seed: int, frames: int) -> None:
    boxes = crop_boxes(plan_move(seed, frames, pan=True), frames)
    assert boxes[0] == (0.0, 0.0, 1.0, 1.0)
    for left, top, right, bottom in boxes:
        assert -1e-12 <= left < right <= 1 + 1e-12 and -1e-12 <= top < bottom <= 1 + 1e-12
    widths = [right - left for left, _, right, _ in boxes]
    assert all(later < earlier for earlier, later in itertools.pairwise(widths))
    assert widths[-1] >= 1 / MAX_ZOOM - 1e-12


def test_a_single_frame_is_the_cover_crop() -> None:
    assert crop_boxes(plan_move(1, 1, pan=True), 1) == [(0.0, 0.0, 1.0, 1.0)]


def test_the_easing_starts_and_ends_slow_but_never_still() -> None:
    times = np.linspace(0, 1, 101)
    values = np.array([ease(t) for t in times])
    speeds = np.diff(values) * 100
    assert values[0] == 0 and values[-1] == pytest.approx(1)
    assert speeds.min() > 0.3 and speeds[0] < speeds[50] / 2 and speeds[-1] < speeds[50] / 2


def test_the_title_card_zooms_to_its_centre() -> None:
    assert plan_move(3, 25, pan=False).pan == (0.0, 0.0)
    assert plan_move(3, 25, pan=True).pan != (0.0, 0.0)


def test_title_words_spell_plainly_what_the_font_lacks() -> None:
    assert title_words("Café  Straße — “naïve” œuvre") == ["Cafe", "Strasse", "-", '"naive"', "oeuvre"]
    assert title_words("红色运动鞋 red 👟 shoe") == ["red", "shoe"]
    assert title_words("ab", drawable=lambda char: char == "a") == ["a"]


def test_wrapping_fills_lines_and_cuts_words_too_long_for_one() -> None:
    def fits(line: str) -> bool:
        return len(line) <= 10

    assert wrap_words(["a", "red", "shoe", "on", "a", "white", "table"], fits) == ["a red shoe", "on a white", "table"]
    assert wrap_words(["abcdefghijklmnopqrstuvwxy", "z"], fits) == ["abcdefghij", "klmnopqrst", "uvwxy z"]
    assert wrap_words([], fits) == []


# --- the check has teeth ----------------------------------------------------------------------------------------------


def test_phase_correlation_measures_a_known_sub_pixel_shift(original: Image.Image) -> None:
    frame = fit_image(original, WIDTH, HEIGHT)
    moved = frame.transform(frame.size, Image.Transform.AFFINE, (1, 0, -2.3, 0, 1, 1.4), Image.Resampling.BICUBIC)
    dx, dy = phase_shift(np.asarray(frame), np.asarray(moved))
    assert dx == pytest.approx(2.3, abs=0.1) and dy == pytest.approx(-1.4, abs=0.1)


def test_the_smoothness_check_catches_whole_pixel_cropping(original: Image.Image) -> None:
    """The same move cropped on whole pixels (ffmpeg zoompan's way) jitters, and the check says so."""
    source = fit_image(original, *source_size(WIDTH, HEIGHT))
    boxes = crop_boxes(plan_move(7, FRAMES, pan=True), FRAMES)
    width, height = source.size
    jittery = np.stack(
        [
            np.asarray(
                source.crop((round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height))).resize(
                    (WIDTH, HEIGHT), Image.Resampling.BICUBIC
                )
            )
            for x0, y0, x1, y1 in boxes
        ]
    )
    with pytest.raises(AssertionError):
        assert_smooth(motion(watch(jittery)))
