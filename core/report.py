"""One file's case report: a single self-contained HTML page an analyst can attach to a case.

Self-contained means no external request of any kind: no scripts, fonts, stylesheets or
images from elsewhere, and no links. The timeline is inline SVG, the spectrogram an embedded
PNG (encoded here with zlib, so no imaging library is needed), with the most suspicious windows
marked on both. What it records: the file (name, size, sha256), when and with what it was
analysed (UTC time, app version, model set, each checkpoint's source and sha256), the
assessment with P(fake), threshold, band and their sources, every model's score, the file's
facts and cautions, the models' measured accuracy on sources they never trained on, and a
plain-language disclaimer.

    python -m core report call.wav --out call.report.html
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VERSION = "0.12"          # bumped with each landed session; `git describe` is added when available

DISCLAIMER = (
    "This report is evidence, not proof. The scores come from machine-learning detectors that "
    "are wrong on a measurable share of recordings, most of all on generators, speakers, "
    "languages and recording channels unlike those they were trained on (see 'Measured "
    "accuracy'). An 'inconclusive' assessment means the detectors cannot back a call either way. "
    "Do not publish, accuse or act on this report alone: corroborate it with the recording's "
    "provenance, its metadata, human listening and other evidence.")


def app_version() -> str:
    """The package version, plus `git describe` of the checkout when it is a git work tree."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=REPO, capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return f"{VERSION} ({out.stdout.strip()})"
    except (OSError, subprocess.SubprocessError):
        pass
    return VERSION


def file_identity(data: bytes, name: str) -> dict:
    return {"name": name, "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


# -- figures ------------------------------------------------------------------------------------

def png_bytes(rgb: np.ndarray) -> bytes:
    """`[H, W, 3]` uint8 -> a PNG file (8-bit RGB, no interlace)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


_STOPS = np.array([[13, 8, 135], [126, 3, 168], [204, 71, 120], [248, 149, 64], [240, 249, 33]], float)


def colour(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> a perceptually ordered dark-blue-to-yellow map (plasma-like)."""
    v = np.clip(v, 0, 1) * (len(_STOPS) - 1)
    i = np.minimum(v.astype(int), len(_STOPS) - 2)
    f = (v - i)[..., None]
    return (_STOPS[i] * (1 - f) + _STOPS[i + 1] * f).astype(np.uint8)


def spectrogram_png(samples: np.ndarray, sr: int = 16_000, width: int = 900, height: int = 160) -> bytes:
    """dB power spectrogram relative to the file's peak, floored at -80 dB (silence is dark)."""
    n_fft, hop = 512, max(160, len(samples) // (width * 2) // 160 * 160 or 160)
    if len(samples) < n_fft:
        samples = np.pad(samples, (0, n_fft - len(samples)))
    frames = np.lib.stride_tricks.sliding_window_view(samples, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2                       # [T, F]
    db = 10 * np.log10(power + 1e-12)
    db = np.clip(db - db.max(), -80, 0) / 80 + 1                            # [0, 1]
    t_idx = np.linspace(0, db.shape[0] - 1, min(width, db.shape[0])).astype(int)
    f_idx = np.linspace(0, db.shape[1] - 1, height).astype(int)
    img = db[t_idx][:, f_idx].T[::-1]                                        # low frequencies at the bottom
    return png_bytes(colour(img))


def _svg_timeline(windows, duration: float, threshold: float, band, marks, width=900, height=140) -> str:
    if not windows or duration <= 0:
        return "<p>No timeline.</p>"
    x = lambda t: 40 + (width - 50) * t / duration                          # noqa: E731
    y = lambda p: 10 + (height - 30) * (1 - p)                              # noqa: E731
    pts = " ".join(f"{x((w.start + w.end) / 2):.1f},{y(w.p_fake):.1f}" for w in windows)
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             'aria-label="P(fake) over time">']
    for a, b in marks:
        parts.append(f'<rect x="{x(a):.1f}" y="10" width="{max(1.0, x(b) - x(a)):.1f}" height="{height - 30}" '
                     'fill="#f4b6b6" opacity="0.6"/>')
    if band is not None:
        parts.append(f'<rect x="40" y="{y(band.high):.1f}" width="{width - 50}" '
                     f'height="{y(band.low) - y(band.high):.1f}" '
                     'fill="#dddddd" opacity="0.5"/>')
    parts.append(f'<line x1="40" x2="{width - 10}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                 'stroke="#b00" stroke-dasharray="4 3"/>')
    parts.append(f'<polyline points="{pts}" fill="none" stroke="#1f5fa8" stroke-width="2"/>')
    for p in (0, 0.5, 1):
        parts.append(f'<text x="4" y="{y(p) + 4:.1f}" font-size="11">{p:.1f}</text>')
    parts.append(f'<text x="40" y="{height - 4}" font-size="11">0 s</text>'
                 f'<text x="{width - 60}" y="{height - 4}" font-size="11">{duration:.1f} s</text></svg>')
    return "".join(parts)


def suspicious_spans(res, k: int = 3) -> list[tuple[float, float]]:
    """The `k` highest-scoring cells of the ensemble timeline."""
    wins = sorted(res.ensemble.windows, key=lambda w: -w.p_fake)[:k] if res.ensemble else []
    return sorted((w.start, w.end) for w in wins)


def _spectrogram_svg(png: bytes, duration: float, marks, width=900, height=160) -> str:
    img = base64.b64encode(png).decode()
    parts = [f'<svg width="{width}" height="{height + 16}" viewBox="0 0 {width} {height + 16}" role="img" '
             f'aria-label="spectrogram"><image x="0" y="0" width="{width}" height="{height}" '
             f'preserveAspectRatio="none" href="data:image/png;base64,{img}"/>']
    for a, b in marks:
        if duration > 0:
            xa, xb = width * a / duration, width * b / duration
            parts.append(f'<rect x="{xa:.1f}" y="0" width="{max(1.0, xb - xa):.1f}" height="{height}" fill="none" '
                         'stroke="#ff3030" stroke-width="2"/>')
    parts.append(f'<text x="2" y="{height + 13}" font-size="11">0-8 kHz as the models see it, dB relative to '
                 'the peak (dark: silence); red boxes: the most suspicious windows</text></svg>')
    return "".join(parts)


# -- the page -----------------------------------------------------------------------------------

def _table(rows: list[tuple], head: tuple | None = None) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head) if head else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{'<tr>' + h + '</tr>' if h else ''}{body}</table>"


def eer_interval(figures: dict) -> tuple[float, float] | None:
    """A card's bootstrap interval of its dev_eval EER (`core/training/bootstrap.py`), if it is well formed."""
    iv = figures.get("eer_interval")
    if isinstance(iv, (list, tuple)) and len(iv) == 2 and all(isinstance(x, (int, float)) for x in iv):
        return float(iv[0]), float(iv[1])
    return None


def _eer_cell(r: dict) -> str:
    """The EER, with its interval when the card has one (dev_eval is a few hundred clips)."""
    iv = eer_interval(r)
    return f"{r['eer']:.1%}" + (f" (95% interval {iv[0]:.1%}-{iv[1]:.1%})" if iv else "")


def unseen_accuracy(det) -> list[tuple]:
    """Each model's figures on sources it never trained on, from its card (`dev_eval`), if measured."""
    rows = []
    for m in det.models:
        d = (m.card or {}).get("dev_eval") or {}
        r = d.get("restored") if isinstance(d.get("restored"), dict) else d
        if r and r.get("eer") is not None:
            rows.append((m.name, _eer_cell(r), f"{r.get('auc', float('nan')):.2f}",
                         d.get("protocol", "extended pool dev_eval")))
        else:
            rows.append((m.name, "not measured", "", "no figures on unseen sources in its card"))
    ens = (det.loaded.ensemble_card or {}).get("dev_eval") or {}
    r = ens.get("restored") if isinstance(ens.get("restored"), dict) else ens
    if r and r.get("eer") is not None:
        rows.append(("ensemble", _eer_cell(r), f"{r.get('auc', float('nan')):.2f}",
                     ens.get("protocol", "extended pool dev_eval")))
    return rows


def build_html(res, det, identity: dict, samples: np.ndarray | None, analysed_at: str, version: str) -> str:
    """The report page for one scored file (`res`, a FileResult) and its decoded samples."""
    esc = html.escape
    a, ens, f = res.assessment, res.ensemble, res.facts
    marks = suspicious_spans(res)
    duration = f.duration_s if f else 0.0
    word = a.label.upper() if a else (ens.verdict or "no verdict").upper()
    colour_of = {"LIKELY FAKE": "#b00020", "LIKELY REAL": "#1b7a36"}.get(word, "#9a6700")
    models = [(m.name, f"{m.p_fake:.3f}" if m.p_fake is not None else "failed", f"{m.threshold:.3f}",
               m.threshold_source, m.verdict or m.error or "", m.source, m.sha256) for m in res.models.values()]
    from .spoken import spoken_rows

    facts = [(k, v) for k, v in (f.as_dict().items() if f else [])] + spoken_rows(res.spoken)
    spectro = _spectrogram_svg(spectrogram_png(samples), duration, marks) if samples is not None and len(samples) \
        else "<p>No spectrogram.</p>"
    band = a.band if a else None
    sections = [
        f"<h1>Deepfake audio case report</h1><p class='muted'>Generated {esc(analysed_at)} (UTC) by the deepfake "
        f"audio workbench, version {esc(version)}.</p>",
        "<h2>File</h2>" + _table([("name", identity["name"]), ("size", f"{identity['size_bytes']:,} bytes"),
                                  ("sha256", identity["sha256"])]),
        f"<h2>Assessment</h2><p class='verdict' style='color:{colour_of}'>{esc(word)}</p>"
        + _table([("ensemble P(fake) (higher = more likely fake)",
                   f"{ens.p_fake:.3f}" if ens and ens.p_fake is not None else "n/a"),
                  ("threshold", f"{ens.threshold:.3f} ({ens.threshold_source})" if ens else ""),
                  ("inconclusive band", f"[{band.low:.2f}, {band.high:.2f}) ({band.source})" if band else ""),
                  ("ensemble", ens.source if ens else ""),
                  ("binary verdict (P(fake) >= threshold)", ens.verdict if ens else "")])
        + ("".join(f"<p>Inconclusive because {esc(r)}.</p>" for r in a.reasons) if a else "")
        + ("".join(f"<p class='caution'>Caution: {esc(c)}</p>" for c in a.cautions) if a else ""),
        "<h2>Every model</h2>" + _table(models, ("model", "P(fake)", "threshold", "threshold source", "verdict",
                                                 "checkpoint source", "checkpoint sha256")),
        f"<h2>Model set</h2><p>{esc(res.set_name)}: {esc(det.loaded.model_set.title)}</p>",
        "<h2>Where in the file</h2><p>Ensemble P(fake) over time (shaded: the inconclusive band; dashed: the "
        "threshold; red: the most suspicious windows)</p>"
        + _svg_timeline(ens.windows if ens else [], duration, ens.threshold if ens else 0.5, band, marks)
        + "<p>Most suspicious windows: " + esc(", ".join(f"{s:.1f}-{e:.1f} s" for s, e in marks) or "none") + "</p>"
        + spectro,
        "<h2>The recording</h2>" + _table(facts, ("fact", "value"))
        + "".join(f"<p class='caution'>{esc(w)}</p>" for w in res.warnings()),
        "<h2>Measured accuracy on sources the models never trained on</h2>"
        + _table(unseen_accuracy(det), ("model", "EER", "AUC", "measured on")),
        f"<h2>Read this first</h2><p>{esc(DISCLAIMER)}</p>",
    ]
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#1b1f24}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
             "font-size:13px;text-align:left;vertical-align:top;word-break:break-all}"
             ".verdict{font-size:28px;font-weight:bold}.muted{color:#666}.caution{color:#9a6700}")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Case report: "
            f"{esc(identity['name'])}</title><style>{style}</style></head><body>" + "".join(sections)
            + "</body></html>")


REPORT_MAX_S = 600.0   # the spectrogram covers at most the first 10 minutes (memory stays bounded)


def report_samples(data: bytes, name: str, max_s: float = REPORT_MAX_S) -> np.ndarray | None:
    """The first `max_s` seconds at 16 kHz for the report's spectrogram, or None when undecodable."""
    from .explain import read_span

    try:
        x = read_span(data, 0.0, max_s, name)   # streamed through the limited decoder child
        return x if len(x) else None
    except Exception:  # the verdict stands without a spectrogram
        return None


def case_report(det, data: bytes, name: str) -> tuple[str, object]:
    """Score `data` with `det` and return (report HTML, FileResult). Raises AudioError as `score` does."""
    analysed_at = utc_now()
    res = det.score(data, name=name)
    return build_html(res, det, file_identity(data, name), report_samples(data, name), analysed_at,
                      app_version()), res
