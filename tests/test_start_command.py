"""The README's start command, as a user runs it: `./app.sh` (install what is missing, then
`streamlit run Home.py` with the arguments passed on) serves the Home page on its embedded
default, the shipped set, with no weights folder and no network. Chromium loads the page.

CI also runs `scripts/check_start.sh` on the fresh checkout before the tests, which covers the
runtime install path from nothing; here the environment exists and app.sh's setup is a no-op.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_app_sh_serves_the_home_page_on_the_shipped_default(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required for this test (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPFAKE_", "PYTHONPATH"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty_hf_home"))
    log = tmp_path / "app_sh.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["./app.sh", "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--server.fileWatcherType", "none"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(proc, port, log, timeout=600)   # app.sh may have to install first
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                expect(page.get_by_text("Deepfake audio workbench").first).to_be_visible(timeout=90_000)
                expect(page.get_by_text("Active set: shipped").first).to_be_visible(timeout=90_000)
            finally:
                browser.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
    assert proc.returncode is not None
