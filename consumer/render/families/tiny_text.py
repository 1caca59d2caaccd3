"""What the tiny models (`VIDGEN_MODEL=tiny:<family>`) share: tokenizers and a T5 encoder built in code (no hub, no
files read), and seeding that gives the same weights on every call and machine.

- T5 / UMT5 (Wan, LTX-Video, CogVideoX, HunyuanVideo-1.5's glyph encoder): `T5Tokenizer(vocab=[(piece, score)])`, the
  tokenizers-backed class of transformers 5, builds a Unigram model from the list as a SentencePiece vocab would.
- Qwen2 / Qwen2.5-VL (EasyAnimate, HunyuanVideo-1.5): a byte-level `Qwen2Tokenizer` of the 256 byte symbols and no
  merges, with a chat template that keeps only the text (both pipelines format prompts through it).
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from transformers import Qwen2Tokenizer, T5Config, T5EncoderModel, T5Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

__all__ = ["QWEN_EOS", "TEXT_DIM", "qwen2_tokenizer", "seeded", "t5_config", "t5_encoder", "t5_tokenizer"]

TEXT_DIM = 32  # d_model of every tiny T5/UMT5 encoder; the tiny transformers' text dims match it
QWEN_EOS = "<|endoftext|>"
_T5_SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2: the layout T5Tokenizer expects
# EasyAnimate sends content as a list of {"type": "text", "text": ...}, HunyuanVideo-1.5 as a string.
_QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{{ c['text'] }}{% endfor %}{% endif %}{% endfor %}"
)
_Module = TypeVar("_Module", bound=torch.nn.Module)


def t5_tokenizer(model_max_length: int = 512) -> T5Tokenizer:
    """The specials, the word-start marker and single characters with and without it: any ASCII prompt tokenizes
    without <unk>. The class of google/umt5-xxl's and t5-v1_1-xxl's tokenizers."""
    pieces: list[tuple[str, float]] = [(token, 0.0) for token in _T5_SPECIALS]
    pieces.append(("\u2581", -2.0))
    characters = string.ascii_letters + string.digits + string.punctuation
    pieces.extend(("\u2581" + char, -3.0) for char in characters)
    pieces.extend((char, -4.0) for char in characters)
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def qwen2_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE with the 256 byte symbols and no merges: every UTF-8 byte is one token."""
    vocab = {symbol: index for index, symbol in enumerate(bytes_to_unicode().values())}
    vocab[QWEN_EOS] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=QWEN_EOS, eos_token=QWEN_EOS, pad_token=QWEN_EOS)
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer


def t5_config(vocab_size: int) -> dict[str, object]:
    """The tiny T5/UMT5 encoder's configuration."""
    return {
        "vocab_size": vocab_size,
        "d_model": TEXT_DIM,
        "d_kv": 8,
        "d_ff": 37,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "dropout_rate": 0.0,
        "is_encoder_decoder": False,
    }


def t5_encoder(vocab_size: int) -> T5EncoderModel:
    return T5EncoderModel(T5Config(**t5_config(vocab_size)))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[Callable[[Callable[[], _Module]], _Module]]:
    """Yields `make(factory)`: reseed, build, eval. Reseeding per component keeps each one's weights independent of
    the others; the caller's global RNG is left as it was."""
    state = torch.random.get_rng_state()

    def make(factory: Callable[[], _Module]) -> _Module:
        torch.manual_seed(seed)
        return factory().eval()

    try:
        yield make
    finally:
        torch.random.set_rng_state(state)
