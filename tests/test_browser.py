"""One end-to-end test in a real browser: `streamlit run Home.py` on a free localhost port,
Debian's Chromium driven by the playwright package (no `playwright install`), a clip uploaded
on the Analyze page, the verdict and the spectrogram awaited, screenshots saved.

Screenshots go to `$BROWSER_ARTIFACTS` when set (CI uploads that folder), else to pytest's
temporary folder; their paths are printed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app_helpers import APP_MODELS, REPO, write_clip
from core.inference import Detector

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, env: dict, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    out = open(log, "wb")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(proc: subprocess.Popen, port: int, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"streamlit did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def artifacts(tmp_path) -> Path:
    d = Path(os.environ.get("BROWSER_ARTIFACTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.mark.slow
def test_upload_in_chromium_shows_verdict_and_spectrogram(seed_weights, tmp_path, artifacts):
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.fail("Debian chromium is required for the browser test (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    clip = write_clip(tmp_path / "call recording.wav", 10.0, seed=7, sr=22_050)
    engine = Detector.from_set("seed", models=",".join(APP_MODELS), weights_dir=seed_weights,
                               allow_download=False)
    want = engine.score(clip, name=clip.name).ensemble

    port = free_port()
    env = dict(os.environ, DEEPFAKE_WEIGHTS_DIR=str(seed_weights), DEEPFAKE_SET="seed",
               DEEPFAKE_MODELS=",".join(APP_MODELS), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    log = tmp_path / "streamlit.log"
    proc = start_app(port, env, log)
    try:
        wait_healthy(proc, port, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                expect(page.get_by_text("Active model set")).to_be_visible(timeout=90_000)
                expect(page.get_by_text("Active set: seed").first).to_be_visible(timeout=90_000)
                page.screenshot(path=str(artifacts / "browser_home.png"))

                page.goto(f"http://127.0.0.1:{port}/Analyze_a_file", wait_until="domcontentloaded")
                upload = page.locator('[data-testid="stFileUploader"] input[type="file"]')
                upload.wait_for(state="attached", timeout=90_000)
                upload.set_input_files(str(clip))
                verdict = page.locator('[data-testid="stAlert"]', has_text="ensemble P(fake)")
                expect(verdict).to_be_visible(timeout=120_000)
                assert f"ensemble P(fake) = {want.p_fake:.3f}" in verdict.inner_text()
                word = engine.score(clip, name=clip.name).assessment.label.capitalize()
                assert word in verdict.inner_text()
                spectrogram = page.locator(".js-plotly-plot", has_text="Mel spectrogram")
                expect(spectrogram).to_be_visible(timeout=60_000)
                expect(page.locator(".js-plotly-plot", has_text="P(fake) over time")).to_be_visible()
                assert spectrogram.locator(".heatmaplayer, image, .hm").count() > 0
                page.screenshot(path=str(artifacts / "browser_analyze.png"))
                report_button = page.get_by_role("button", name="Download the case report (HTML)")
                expect(report_button).to_be_visible(timeout=60_000)
                with page.expect_download(timeout=60_000) as dl:
                    report_button.click()
                report_path = tmp_path / "case-report.html"
                dl.value.save_as(str(report_path))
                report_html = report_path.read_text()
                import hashlib

                assert hashlib.sha256(clip.read_bytes()).hexdigest() in report_html
                assert "http" not in report_html.lower() and "data:image/png;base64," in report_html
                assert f"{want.p_fake:.3f}" in report_html
                spectrogram.scroll_into_view_if_needed()
                page.screenshot(path=str(artifacts / "browser_analyze_spectrogram.png"))
            finally:
                browser.close()
    finally:
        stop(proc)
    shots = sorted(artifacts.glob("browser_*.png"))
    assert len(shots) == 3 and all(s.stat().st_size > 10_000 for s in shots)
    print("screenshots:", *map(str, shots), sep="\n  ")
