"""The Detector: whole files in sliding windows -> batched features -> models -> P(fake).

Kept apart from the models (as pyannote's `Inference` is): a window defaults to the
model's training crop (its front end's frames), the hop to half of it; windows from one or
many files are batched, each front end is computed once per window and feeds every model
that uses it, and a `progress(done, total)` callback reports as it goes.

Rules, so the numbers mean one thing everywhere:
  * P(fake): higher = more likely fake, for every model and the ensemble.
  * Windows cover the whole file: starts at 0, hop, 2*hop, ... plus one last window flush
    with the end, so no tail goes unscored. A file shorter than a window is one short window
    (zero-padded features for the seed's front ends, tiled audio for the project's).
  * A clip whose front end yields at most `frames` frames is one window, scored as the seed
    scores it. With `seed_crop=True` every file is one window: its first `frames` frames,
    normalised over the whole clip, which reproduces the seed app's number on any file (and
    leaves the rest of a long file unscored).
  * A model's file score is the mean of its window P(fake) (also reported: the max, and
    the fraction of windows over threshold).
  * The ensemble's file score is the weighted mean of the models' file scores, with the
    weights of the set's ensemble card (equal weights without one), renormalised over the
    models that scored (models that failed are left out and named), then mapped through the
    card's calibration when it has one (fitted on unseen sources); its timeline averages the
    models' windows on a 0.5 s grid with the same weights and calibration.
  * Verdict: "fake" when P(fake) >= threshold; the threshold's value and source travel
    with every result.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .assessment import Assessment, assess, cautions_of
from .audio import TARGET_SR, AudioFacts
from .decoding import open_audio
from .errors import AudioError, ConfigError, DetectorError
from .execution import check_precision
from .features import FrontEnd, clip_features
from .loading import LoadedModel, LoadedSet, load_set
from .spoken import HEAD_SAMPLES, SpokenCheck, check_spoken, spoken_cautions

Progress = Callable[[float, float], None]
ENSEMBLE_GRID_S = 0.5
MIN_AUDIO_S = 0.1   # shorter files are refused: no front end can frame them, and they hold no evidence


@dataclass
class WindowScore:
    start: float
    end: float
    p_fake: float


@dataclass
class ModelScore:
    name: str
    p_fake: float | None
    threshold: float
    threshold_source: str
    verdict: str | None
    windows: list[WindowScore] = field(default_factory=list)
    max_p_fake: float | None = None
    frac_windows_over: float | None = None
    source: str = ""
    sha256: str = ""
    error: str | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["windows"] = [asdict(w) for w in self.windows]
        return d


@dataclass
class FileResult:
    file: str
    facts: AudioFacts | None
    models: dict[str, ModelScore]
    ensemble: ModelScore | None
    set_name: str = ""
    error: str | None = None
    assessment: Assessment | None = None
    spoken: SpokenCheck | None = None     # language and speech check (Detector(spoken_check=True))

    def warnings(self, window_s: float | None = None) -> list[str]:
        return self.facts.warnings(window_s) if self.facts else []

    def as_dict(self) -> dict:
        return {
            "file": self.file, "set": self.set_name,
            "audio": self.facts.as_dict() if self.facts else None,
            "models": {k: v.as_dict() for k, v in self.models.items()},
            "ensemble": ({**self.ensemble.as_dict(), **self._assessment_fields()} if self.ensemble else None),
            "warnings": self.warnings(),
            "spoken": self.spoken.as_dict() if self.spoken else None,
            "error": self.error,
        }

    def _assessment_fields(self) -> dict:
        a = self.assessment
        if a is None:
            return {"assessment": None, "inconclusive_band": None}
        return {"assessment": a.label, "inconclusive_band": a.band.as_list(), "band_source": a.band.source,
                "assessment_reasons": a.reasons, "cautions": a.cautions}


def verdict(p: float, threshold: float) -> str:
    return "fake" if p >= threshold else "real"


def window_starts(n: int, window: int, hop: int) -> list[tuple[int, int]]:
    """(start, end) sample spans covering `n` samples; see the module docstring."""
    if n <= window:
        return [(0, n)]
    spans = [(s, s + window) for s in range(0, n - window + 1, hop)]
    if spans[-1][1] < n:
        spans.append((n - window, n))
    return spans


class _WindowCutter:
    """Cut windows from a stream of blocks with bounded memory (keeps at most one window + block)."""

    def __init__(self, window: int, hop: int):
        self.window, self.hop = window, hop
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0          # absolute index of buf[0]
        self.next_start = 0
        self.last_end = 0

    def push(self, block: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        self.buf = np.concatenate([self.buf, block]) if len(self.buf) else block
        end = self.buf_start + len(self.buf)
        while self.next_start + self.window <= end:
            a = self.next_start - self.buf_start
            yield self.next_start, self.next_start + self.window, self.buf[a:a + self.window]
            self.last_end = self.next_start + self.window
            self.next_start += self.hop
        keep_from = min(self.next_start, end - self.window)
        if keep_from > self.buf_start:
            self.buf = self.buf[keep_from - self.buf_start:].copy()
            self.buf_start = keep_from

    def finish(self) -> Iterator[tuple[int, int, np.ndarray]]:
        end = self.buf_start + len(self.buf)
        if self.last_end == 0 and end > 0:
            yield 0, end, self.buf[: end - self.buf_start]
        elif self.last_end < end:
            yield end - self.window, end, self.buf[len(self.buf) - self.window:]


@dataclass
class _FileState:
    key: int
    name: str
    facts: AudioFacts | None = None
    pending_windows: int = 0
    decoded: bool = False
    error: str | None = None
    scores: dict = field(default_factory=lambda: defaultdict(list))   # model -> [(start, end, p)]
    model_errors: dict = field(default_factory=dict)
    head: list = field(default_factory=list)      # the first 30 s, for the spoken check
    head_n: int = 0


class Detector:
    """Score audio with a loaded model set.

    >>> det = Detector.from_set("shipped")                   # doctest: +SKIP
    >>> res = det.score("call.wav")                          # doctest: +SKIP
    >>> res.ensemble.p_fake, res.ensemble.verdict            # doctest: +SKIP
    """

    def __init__(self, loaded: LoadedSet, hop_fraction: float = 0.5, window_s: float | None = None,
                 batch_size: int = 32, decode_workers: int = 2, precision: str = "fp32", seed_crop: bool = False,
                 spoken_check: bool = False):
        if not loaded.models:
            raise DetectorError("no models selected")
        if not 0 < hop_fraction <= 1:
            raise DetectorError(f"hop fraction must be in (0, 1], got {hop_fraction}")
        if window_s is not None and window_s <= 0:
            raise DetectorError(f"window must be positive, got {window_s}")
        if seed_crop and window_s is not None:
            raise ConfigError("a seed crop scores the first window of each front end's own length; "
                              "it cannot be combined with a window length")
        self.seed_crop = bool(seed_crop)
        self.spoken_check = bool(spoken_check)   # core/spoken.py: about a second per file on 2 threads
        self.loaded = loaded
        self.models = loaded.models
        self.hop_fraction = hop_fraction
        self.window_s = window_s
        self.batch_size = max(1, int(batch_size))
        self.decode_workers = max(1, int(decode_workers))
        self.precision = check_precision(precision)
        self.front_ends: dict[FrontEnd, list[LoadedModel]] = defaultdict(list)
        for m in self.models:
            self.front_ends[m.spec.front_end].append(m)
        # a centred STFT needs more than n_fft/2 samples per window
        need = max(fe.n_fft // 2 + 1 for fe in self.front_ends)
        if window_s is not None and int(round(window_s * TARGET_SR)) < need:
            raise ConfigError(f"window of {window_s:g} s is too short for the selected models' front ends; "
                              f"use at least {need / TARGET_SR:.3f} s")
        self.min_samples = max(need, int(round(MIN_AUDIO_S * TARGET_SR)))

    @classmethod
    def from_set(cls, set_name: str | None = "auto", models=None, weights_dir=None, allow_download=True,
                 revision=None, **kw) -> "Detector":
        return cls(load_set(set_name, models, weights_dir, allow_download, revision), **kw)

    # -- geometry -------------------------------------------------------------
    def window_samples(self, fe: FrontEnd) -> int:
        return int(round(self.window_s * TARGET_SR)) if self.window_s else fe.window_samples

    def hop_samples(self, fe: FrontEnd) -> int:
        return max(1, int(round(self.window_samples(fe) * self.hop_fraction)))

    @property
    def shortest_window_s(self) -> float:
        return min(self.window_samples(fe) for fe in self.front_ends) / TARGET_SR

    @property
    def set_name(self) -> str:
        return self.loaded.model_set.name

    def info(self) -> dict:
        return {"set": self.set_name, "title": self.loaded.model_set.title,
                "models": [m.describe() for m in self.models],
                "skipped_models": dict(self.loaded.skipped),
                "ensemble_threshold": self.loaded.ensemble_threshold,
                "ensemble_threshold_source": self.loaded.ensemble_threshold_source,
                "ensemble_weights": _weights_text(self._ensemble_weights([m.name for m in self.models]),
                                                  bool(self._card_weights)),
                "hop_fraction": self.hop_fraction, "precision": self.precision, "seed_crop": self.seed_crop,
                "windows_s": {fe.name: self.window_samples(fe) / TARGET_SR for fe in self.front_ends}}

    # -- public scoring -------------------------------------------------------
    def score(self, source, name: str | None = None, progress: Progress | None = None) -> FileResult:
        """Score one file (path, bytes or stream), streaming it. Raises AudioError on a bad file."""
        res = next(self.score_many([(name or _name_of(source), source)], progress=None,
                                   seconds_progress=progress))
        if res.error:
            raise AudioError(res.error)
        return res

    def score_samples(self, samples: np.ndarray, facts: AudioFacts) -> FileResult:
        """Score audio already decoded to mono 16 kHz. Raises AudioError as `score` does."""
        res = next(self.score_many([(facts.name, _Decoded(samples, facts))]))
        if res.error:
            raise AudioError(res.error)
        return res

    def score_many(self, items: Iterable[tuple[str, object]], progress: Progress | None = None,
                   seconds_progress: Progress | None = None) -> Iterator[FileResult]:
        """Score many files; yields one FileResult per item, in order, errors as error results.

        Files are decoded in background threads while the models run on the current batch;
        windows from different files share batches. Each decode runs in a limited child
        process (core.decoding): a decoder that crashes or hangs is that file's error.
        """
        items = list(items)
        total = len(items)
        states: dict[int, _FileState] = {}
        pending: dict[FrontEnd, list] = defaultdict(list)   # fe -> [(key, start, end, samples)]
        results: dict[int, FileResult] = {}
        next_out = 0

        def flush(force: bool = False) -> None:
            for fe in list(pending):
                while pending[fe] and (force or len(pending[fe]) >= self.batch_size):
                    batch, pending[fe][:] = pending[fe][: self.batch_size], pending[fe][self.batch_size:]
                    self._run_batch(fe, batch, states)
            for key in [k for k, s in states.items() if s.decoded and s.pending_windows == 0]:
                results[key] = self._finish(states.pop(key))
                if progress:
                    progress(len(results) + next_out, total)

        def drop(key: int) -> None:
            for fe in pending:
                pending[fe][:] = [p for p in pending[fe] if p[0] != key]
            states[key].pending_windows = 0

        for key, name, facts, blocks in _prefetch(items, self.decode_workers):
            st = states[key] = _FileState(key, name)
            try:
                cutters = {fe: _WindowCutter(self.window_samples(fe), self.hop_samples(fe))
                           for fe in self.front_ends}
                duration_hint = facts.duration_s if facts else 0.0
                seen = 0
                whole: list[np.ndarray] = []      # seed crop: the clip-wide statistics need every sample
                for block in blocks:
                    seen += len(block)
                    if self.spoken_check and st.head_n < HEAD_SAMPLES:
                        st.head.append(np.array(block[: HEAD_SAMPLES - st.head_n], np.float32))
                        st.head_n += len(st.head[-1])
                    if self.seed_crop:
                        whole.append(np.array(block, np.float32))
                    else:
                        for fe, cut in cutters.items():
                            for s, e, w in cut.push(block):
                                pending[fe].append((key, s, e, w))
                                st.pending_windows += 1
                    flush()  # full batches only: memory stays bounded for long files
                    if seconds_progress:
                        seconds_progress(seen / TARGET_SR, max(duration_hint, seen / TARGET_SR))
                st.facts = blocks.facts
                if st.facts.peak_dbfs == float("-inf"):
                    nf = st.facts.nonfinite_samples
                    raise AudioError(f"{name}: the audio is digital silence (all samples are zero"
                                     + (f" after {nf} NaN/inf samples were replaced by 0" if nf else "")
                                     + "); there is nothing to analyse")
                if seen < self.min_samples:
                    raise AudioError(f"{name}: too short to analyse ({seen} sample(s) = {seen / TARGET_SR:.3f} s "
                                     f"at 16 kHz); at least {self.min_samples / TARGET_SR:.2f} s of audio "
                                     "is needed")
                if self.seed_crop:
                    clip = torch.from_numpy(np.concatenate(whole))
                    del whole
                    for fe in self.front_ends:  # precomputed features: [n_mels, frames]
                        pending[fe].append((key, 0, min(seen, fe.window_samples), clip_features(fe, clip).numpy()))
                        st.pending_windows += 1
                    st.facts.analysed_s = min(seen, max(fe.window_samples for fe in self.front_ends)) / TARGET_SR
                else:
                    for fe, cut in cutters.items():
                        for s, e, w in cut.finish():
                            pending[fe].append((key, s, e, w))
                            st.pending_windows += 1
                    st.facts.analysed_s = seen / TARGET_SR
            except DetectorError as e:
                st.error = str(e)
                drop(key)
            except Exception as e:  # a decoder bug must not stop a batch: it becomes this file's error
                st.error = f"{name}: unexpected decoding failure ({type(e).__name__}: {e})"
                drop(key)
            st.decoded = True
            flush(force=key == total - 1)
            while next_out in results:
                yield results.pop(next_out)
                next_out += 1
        flush(force=True)
        while next_out in results:
            yield results.pop(next_out)
            next_out += 1

    # -- internals ------------------------------------------------------------
    def _run_batch(self, fe: FrontEnd, batch: list, states: dict[int, _FileState]) -> None:
        by_len: dict[int, list[int]] = defaultdict(list)
        feats = torch.zeros(len(batch), fe.n_mels, fe.frames)
        for i, (_, s, e, w) in enumerate(batch):
            if w.ndim == 2:          # features computed already (seed crop)
                feats[i] = torch.from_numpy(w)
            else:
                by_len[len(w)].append(i)
        try:
            for idx in by_len.values():
                x = torch.from_numpy(np.stack([batch[i][3] for i in idx]))
                feats[idx] = fe(x)
        except Exception:  # must not stop a batch: redo window by window, failing only the files at fault
            for i, (key, _, _, w) in enumerate(batch):
                if w.ndim == 2:
                    continue
                try:
                    feats[i] = fe(torch.from_numpy(np.asarray(w))[None])[0]
                except Exception as e:
                    if key in states and not states[key].error:
                        states[key].error = (f"{states[key].name}: cannot compute features "
                                             f"({type(e).__name__}: {e})")
        for m in self.front_ends[fe]:
            errs: dict[int, str] = {}
            try:
                p = _model_p(m, feats, self.precision)
            except Exception:  # retry file by file, so one file's windows cannot fail another file
                by_key: dict[int, list[int]] = defaultdict(list)
                for i, (key, *_) in enumerate(batch):
                    by_key[key].append(i)
                p = np.full(len(batch), np.nan)
                for key, idx in by_key.items():
                    try:
                        p[idx] = _model_p(m, feats[idx], self.precision)
                    except Exception as e:
                        errs[key] = f"{type(e).__name__}: {e}"
            for (key, s, e, _), pi in zip(batch, p):
                if key not in states:
                    continue
                if key in errs:
                    states[key].model_errors.setdefault(m.name, errs[key])
                elif not np.isfinite(pi):
                    states[key].model_errors.setdefault(m.name, "the model produced a non-finite score (NaN/inf)")
                else:
                    states[key].scores[m.name].append((s / TARGET_SR, e / TARGET_SR, float(pi)))
        for key, *_ in batch:
            if key in states:
                states[key].pending_windows -= 1

    def _finish(self, st: _FileState) -> FileResult:
        if st.error:
            return FileResult(st.name, st.facts, {}, None, self.set_name, st.error)
        out: dict[str, ModelScore] = {}
        for m in self.models:
            base = dict(name=m.name, threshold=m.threshold, threshold_source=m.threshold_source,
                        source=m.checkpoint.source, sha256=m.checkpoint.sha256)
            if m.name in st.model_errors:
                out[m.name] = ModelScore(p_fake=None, verdict=None, error=st.model_errors[m.name], **base)
                continue
            wins = sorted(st.scores.get(m.name, []))
            ps = np.array([w[2] for w in wins])
            p = float(ps.mean())
            out[m.name] = ModelScore(
                p_fake=p, verdict=verdict(p, m.threshold), windows=[WindowScore(*w) for w in wins],
                max_p_fake=float(ps.max()), frac_windows_over=float((ps >= m.threshold).mean()), **base)
        ens = self._ensemble(out)
        spoken = check_spoken(np.concatenate(st.head)) if self.spoken_check and st.head else None
        st.head = []
        return FileResult(st.name, st.facts, out, ens, self.set_name,
                          assessment=self._assess(ens, out, st.facts, spoken), spoken=spoken)

    def _assess(self, ens: ModelScore, scores: dict[str, ModelScore], facts,
                spoken: SpokenCheck | None = None) -> Assessment | None:
        """The three-way assessment of the ensemble score (core/assessment.py), with the file's
        cautions: its facts', and the spoken check's against the weighted models' training languages."""
        if ens is None or ens.p_fake is None:
            return None
        ok = {n: s for n, s in scores.items() if s.p_fake is not None}
        weights = self._ensemble_weights(list(ok))
        weighted = {n: s.p_fake for n, s in ok.items() if weights.get(n, 0) > 0}
        cards = {m.name: m.card for m in self.models if m.name in weighted}
        return assess(ens.p_fake, ens.threshold, ens.threshold_source, self.loaded.band, weighted,
                      {n: ok[n].threshold for n in weighted},
                      cautions_of(facts) + spoken_cautions(spoken, cards))

    def _calibrated(self, p: float) -> float:
        """The ensemble card's calibration of the weighted mean (fitted on unseen sources), if it applies."""
        cal = self.loaded.ensemble_calibration
        return _platt(p, cal) if cal and cal.get("method") == "platt" else p

    @property
    def _card_weights(self) -> dict[str, float]:
        """The ensemble card's weights ({} without a card or weights)."""
        return (self.loaded.ensemble_card or {}).get("weights") or {}

    def _ensemble_weights(self, names: list[str]) -> dict[str, float]:
        """The ensemble card's weights over the models that scored (renormalised); equal without a card."""
        if self._card_weights:
            return _normalised(self._card_weights, names)
        return {n: 1 / len(names) for n in names}

    def _ensemble(self, scores: dict[str, ModelScore]) -> ModelScore:
        ok = [s for s in scores.values() if s.p_fake is not None]
        thr, src = self.loaded.ensemble_threshold, self.loaded.ensemble_threshold_source
        failed = [s.name for s in scores.values() if s.p_fake is None]
        if not ok:
            return ModelScore("ensemble", None, thr, src, None, error="every model failed")
        weights = self._ensemble_weights([s.name for s in ok])
        p = self._calibrated(float(sum(weights[s.name] * s.p_fake for s in ok)))
        end = max(w.end for s in ok for w in s.windows)
        grid = np.arange(0.0, max(end, 1e-9), ENSEMBLE_GRID_S)
        timeline = []
        for g0 in grid:
            g1 = min(g0 + ENSEMBLE_GRID_S, end)
            mid = (g0 + g1) / 2
            vals = []
            for s in ok:
                cover = [w.p_fake for w in s.windows if w.start <= mid < w.end or (w.end == end and mid <= w.end)]
                if cover:
                    vals.append((weights[s.name], float(np.mean(cover))))
            if vals:
                wsum = sum(w for w, _ in vals)
                v = sum(w * x for w, x in vals) / wsum if wsum > 0 else float(np.mean([x for _, x in vals]))
                timeline.append(WindowScore(float(g0), float(g1), self._calibrated(v)))
        ps = np.array([w.p_fake for w in timeline]) if timeline else np.array([p])
        return ModelScore("ensemble", p, thr, src, verdict(p, thr), timeline, float(ps.max()),
                          float((ps >= thr).mean()),
                          source=_weights_text(weights, bool(self._card_weights))
                          + (", then calibrated on unseen sources"
                             if (self.loaded.ensemble_calibration or {}).get("method") == "platt" else "")
                          + (f" ({', '.join(failed)} failed)" if failed else ""))


def _platt(p: float, cal: dict) -> float:
    z = float(np.log(max(p, 1e-6) / max(1 - p, 1e-6)))
    return float(1 / (1 + np.exp(-(cal["a"] * z + cal["b"]))))


def _weights_text(weights: dict[str, float], from_card: bool) -> str:
    """How the ensemble combined the models, e.g. 'weighted mean: gnn 0.50, resnet 0.50 (senet at weight 0)'."""
    if not from_card:
        return f"mean of {len(weights)} models"
    used = sorted((n for n in weights if weights[n] > 0), key=lambda n: -weights[n])
    idle = [n for n in weights if weights[n] <= 0]
    return ("weighted mean: " + ", ".join(f"{n} {weights[n]:.2f}" for n in used)
            + (f" ({', '.join(idle)} at weight 0)" if idle else ""))


def _normalised(weights: dict[str, float], names: list[str]) -> dict[str, float]:
    w = {n: max(0.0, float(weights.get(n, 0.0))) for n in names}
    total = sum(w.values())
    return {n: v / total for n, v in w.items()} if total > 0 else {n: 1 / len(names) for n in names}


def _model_p(m: LoadedModel, feats: torch.Tensor, precision: str = "fp32") -> np.ndarray:
    p = m.p_fake(feats, precision).detach().float().numpy().reshape(-1)
    if len(p) != len(feats):
        raise DetectorError(f"the model returned {len(p)} scores for {len(feats)} windows")
    return p


class _Decoded:
    """Already-decoded audio passed through the same path as a file."""

    def __init__(self, samples: np.ndarray, facts: AudioFacts):
        self.samples, self.facts = samples.astype(np.float32), facts


class _BlockStream:
    """Iterator over decoded blocks with `facts` (complete once exhausted)."""

    def __init__(self, it: Iterator[np.ndarray], facts_fn: Callable[[], AudioFacts]):
        self._it, self._facts_fn = it, facts_fn

    def __iter__(self):
        return self._it

    @property
    def facts(self) -> AudioFacts:
        return self._facts_fn()


PREFETCH_MAX_S = 120.0  # files up to this long are decoded ahead in threads; longer ones stream


def _open_stream(name: str, source) -> tuple[AudioFacts, _BlockStream]:
    if isinstance(source, _Decoded):
        return source.facts, _BlockStream(iter([source.samples]), lambda: source.facts)
    reader = open_audio(source, name)   # in a limited child: a decoder crash costs this file only

    def gen():
        try:
            yield from reader.blocks()
        finally:
            reader.close()
    return reader.facts, _BlockStream(gen(), lambda: reader.facts)


def _decode_all(name: str, source):
    """Decode a short file completely (in a worker thread); a long one is left to stream."""
    try:
        facts, stream = _open_stream(name, source)
        if isinstance(source, _Decoded) or facts.duration_s > PREFETCH_MAX_S:
            return facts, stream, None
        blocks = list(stream)
        return facts, _BlockStream(iter(blocks), lambda: stream.facts), None
    except DetectorError as e:
        return None, None, str(e)
    except Exception as e:
        return None, None, f"{name}: cannot decode ({type(e).__name__}: {e})"


def _prefetch(items: list[tuple[str, object]], workers: int):
    """Yield (key, name, facts, blocks) in order while decoding the next files in threads."""
    from concurrent.futures import ThreadPoolExecutor

    def failing(err: str):
        def gen():
            raise AudioError(err)
            yield  # pragma: no cover
        return _BlockStream(gen(), lambda: None)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        ahead = max(2, workers * 2)
        futures: dict[int, object] = {}
        for i in range(min(ahead, len(items))):
            futures[i] = pool.submit(_decode_all, *items[i])
        for i, (name, _) in enumerate(items):
            facts, stream, err = futures.pop(i).result()
            nxt = i + ahead
            if nxt < len(items):
                futures[nxt] = pool.submit(_decode_all, *items[nxt])
            yield i, name, facts, (failing(err) if err else stream)


def _name_of(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", None) or "<upload>"


__all__ = ["Detector", "FileResult", "ModelScore", "WindowScore", "window_starts", "verdict"]
