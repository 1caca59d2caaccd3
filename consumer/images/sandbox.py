"""Decode an untrusted start image in a throwaway child process with hard limits, and get back only the frame.

The child is a fresh interpreter (`python -m consumer.images.sandbox`, never a fork of the worker: no model, no
clients, no credentials in its environment) that imports Pillow and `consumer.images.decoding`, nothing heavier.
Before it reads the image it caps its own address space at what it holds plus `memory_bytes` (RLIMIT_AS), its CPU
time at `cpu_s` (RLIMIT_CPU) and core dumps at zero; the worker kills it past a wall-clock limit of 2 x `cpu_s` + 1 s.
It answers one JSON status line, then the fitted frame's raw RGB bytes: nothing of the source's metadata can come
back. One child per decode: a decode never inherits another's heap, and the worker's render slots
(VIDGEN_MAX_INFLIGHT_JOBS) bound how many run at once, so that many times `memory_bytes` is what decodes can take.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from consumer.errors import ImageError, ImageTooLarge, VidgenError
from consumer.images.decoding import decode_image, fit_image

__all__ = [
    "PACKAGE_PARENT",
    "DecodeLimits",
    "child_command",
    "child_environment",
    "decode_in_sandbox",
    "limit_resources",
]

log = logging.getLogger(__name__)

_MODULE = "consumer.images.sandbox"
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # a child run there imports this very copy of `consumer`
_CPU_SIGNALS = frozenset({signal.SIGXCPU, signal.SIGKILL})  # RLIMIT_CPU: SIGXCPU at the soft limit, then SIGKILL
_MIB = 1 << 20


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int
    max_decoded_bytes: int  # pixels x bands x bytes per sample, from the header
    memory_bytes: int  # address space the decode may add to the child's own
    cpu_s: int  # CPU seconds the child may use

    @property
    def wall_s(self) -> float:
        """The worker kills the child past this: twice its CPU time (a busy machine), plus start-up."""
        return 2.0 * self.cpu_s + 1.0


def child_command(width: int, height: int, limits: DecodeLimits) -> list[str]:
    """The child's command line: the same interpreter, Python variables and user site ignored (-E -s)."""
    numbers = (width, height, limits.max_pixels, limits.max_decoded_bytes, limits.memory_bytes, limits.cpu_s)
    return [sys.executable, "-E", "-s", "-m", _MODULE, *map(str, numbers)]


def decode_in_sandbox(data: bytes, width: int, height: int, limits: DecodeLimits) -> Image.Image:
    """Decode `data` and fit it to `width` x `height` in a child process; blocking (run it off the event loop).

    Raises what `decode_image` raises, plus `ImageTooLarge` when the child runs out of its memory, CPU or wall
    time, and `ImageError` when the decoder crashes. A child that fails for other reasons is the worker's fault:
    `VidgenError` (internal_error).
    """
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module, numbers only
            child_command(width, height, limits),
            input=data,
            capture_output=True,
            timeout=limits.wall_s,
            cwd=PACKAGE_PARENT,
            env=child_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed and reaped the child
        raise ImageTooLarge(f"decoding the image took longer than {limits.wall_s:.0f} s") from exc
    status, _, frame = done.stdout.partition(b"\n")
    if done.returncode == 0 and status:
        answer = json.loads(status)
        if answer["code"] is None and len(frame) == width * height * 3:
            return Image.frombytes("RGB", (width, height), frame)
        if answer["code"] == ImageTooLarge.code:
            raise ImageTooLarge(answer["message"])
        if answer["code"] == ImageError.code:
            raise ImageError(answer["message"])
    if -done.returncode in _CPU_SIGNALS:
        raise ImageTooLarge(f"decoding the image used more than {limits.cpu_s} s of CPU")
    if done.returncode < 0:
        raise ImageError(f"the image crashed the decoder ({signal.Signals(-done.returncode).name})")
    # Not the image's doing: a broken installation or a bug. stderr may quote the image, so it is not logged.
    log.error("start-image decoder exited with status %d (%d bytes on stderr)", done.returncode, len(done.stderr))
    raise VidgenError(f"start-image decoder failed with exit status {done.returncode}")


def child_environment() -> dict[str, str]:
    """Nothing of the parent's environment (it holds credentials) but what the interpreter may need to load."""
    return {name: os.environ[name] for name in ("LD_LIBRARY_PATH",) if name in os.environ}


def limit_resources(memory_bytes: int, cpu_s: int) -> None:
    """In a child about to read an untrusted image: no core dumps, `cpu_s` of CPU, `memory_bytes` more address space."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    if sys.platform == "linux":  # elsewhere RLIMIT_AS is not enforced; the CPU and wall limits still are
        with open("/proc/self/statm", encoding="ascii") as statm:
            held = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (held + memory_bytes, held + memory_bytes))


def _answer(code: str | None, message: str = "", frame: bytes = b"") -> None:
    sys.stdout.buffer.write(json.dumps({"code": code, "message": message}).encode() + b"\n" + frame)
    sys.stdout.buffer.flush()


def main(argv: list[str]) -> int:
    """The child: limits first, then read the image from stdin, answer on stdout."""
    width, height, max_pixels, max_decoded_bytes, memory_bytes, cpu_s = map(int, argv)
    limit_resources(memory_bytes, cpu_s)
    try:
        image = decode_image(sys.stdin.buffer.read(), max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
        frame = fit_image(image, width, height).tobytes()
    except MemoryError:
        _answer(ImageTooLarge.code, f"decoding the image needs more than {math.ceil(memory_bytes / _MIB)} MiB")
    except VidgenError as exc:
        _answer(exc.code, exc.message)
    else:
        _answer(None, frame=frame)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
