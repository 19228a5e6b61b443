"""core/report.py and `python -m core report`: the case report is one self-contained HTML page
holding the file's hash, the analysis time, the version, the set and its checkpoints, the
assessment with its band, every model's score, embedded figures, and no external reference."""

from __future__ import annotations

import base64
import html
import datetime as dt
import hashlib
import re
import subprocess
import sys
import zlib

import numpy as np
import pytest

from conftest import FAST_MODELS, REPO, python_env, speechlike
from core import report


def test_png_encoder_writes_a_valid_png():
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[1, 2] = [255, 10, 20]
    png = report.png_bytes(rgb)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    ihdr = png[16:29]
    assert int.from_bytes(ihdr[:4], "big") == 4 and int.from_bytes(ihdr[4:8], "big") == 3
    idat_len = int.from_bytes(png[33:37], "big")
    raw = zlib.decompress(png[41:41 + idat_len])
    assert len(raw) == 3 * (1 + 4 * 3) and raw[1 + 13 + 6:1 + 13 + 9] == bytes([255, 10, 20])


def test_spectrogram_draws_silence_dark():
    x = np.zeros(32_000, np.float32)
    x[16_000:] = speechlike(1.0, seed=1)
    png = report.spectrogram_png(x, width=100, height=20)
    idat_len = int.from_bytes(png[33:37], "big")
    raw = np.frombuffer(zlib.decompress(png[41:41 + idat_len]), np.uint8).reshape(20, 1 + 100 * 3)
    img = raw[:, 1:].reshape(20, 100, 3).astype(int)
    assert img[:, :40].sum() < img[:, 60:].sum() * 0.6, "the silent first half is darker"


@pytest.fixture(scope="module")
def page_and_result(fast_detector, tmp_path_factory):
    import soundfile as sf

    p = tmp_path_factory.mktemp("r") / "call <1>.wav"
    sf.write(p, speechlike(9.0, seed=4), 16_000)
    data = p.read_bytes()
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    page, res = report.case_report(fast_detector, data, p.name)
    return page, res, data, before


def test_report_holds_what_a_case_needs(page_and_result, fast_detector):
    page, res, data, before = page_and_result
    assert hashlib.sha256(data).hexdigest() in page and f"{len(data):,} bytes" in page
    assert "call &lt;1&gt;.wav" in page and "<1>" not in page, "names are escaped"
    stamp = re.search(r"Generated (\S+) \(UTC\)", page).group(1)
    when = dt.datetime.fromisoformat(stamp)
    assert when.tzinfo is not None and abs((when - before).total_seconds()) < 120
    assert report.VERSION in page
    a = res.assessment
    assert a.label.upper() in page and f"{res.ensemble.p_fake:.3f}" in page
    assert f"[{a.band.low:.2f}, {a.band.high:.2f})" in page and html.escape(a.band.source) in page
    for m in res.models.values():
        assert f"{m.p_fake:.3f}" in page and m.sha256 in page and html.escape(m.threshold_source) in page
    assert "Measured accuracy on sources the models never trained on" in page
    assert "evidence, not proof" in page


def test_report_embeds_its_figures_and_requests_nothing(page_and_result):
    page = page_and_result[0]
    assert "<polyline" in page, "the timeline is inline SVG"
    m = re.search(r'href="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert m and base64.b64decode(m.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in page.lower() and "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:)', page), "every src/href is inline data"


def test_cli_report_writes_the_page(tmp_path, fast_weights):
    import soundfile as sf

    clip = tmp_path / "c.wav"
    sf.write(clip, speechlike(4.0, seed=2), 16_000)
    out = tmp_path / "c.html"
    r = subprocess.run([sys.executable, "-m", "core", "report", str(clip), "--out", str(out), "--set", "seed",
                        "--models", FAST_MODELS, "--weights-dir", str(fast_weights), "--no-download"],
                       cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert hashlib.sha256(clip.read_bytes()).hexdigest() in page and "ensemble P(fake)" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "core", "report", str(tmp_path / "nope.wav"), "--out",
                          str(tmp_path / "x.html"), "--set", "seed", "--models", FAST_MODELS, "--weights-dir",
                          str(fast_weights), "--no-download"], cwd=REPO, env=python_env(), capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode != 0 and "cannot read" in bad.stderr and "Traceback" not in bad.stderr
