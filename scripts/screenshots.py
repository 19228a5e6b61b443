#!/usr/bin/env python
"""Regenerate the README's dashboard screenshots (docs/screenshots/*.png, 1280x900).

Starts `streamlit run Home.py` on a free localhost port, drives Debian's Chromium with the
playwright package through the four pages in one browser session (Home; Analyze with one
clip; Batch on a small labelled folder; Compare on that batch) and saves one screenshot per
page, plus the Analyze page's audio section.

    .venv/bin/python scripts/screenshots.py                      # the default set (see below)
    .venv/bin/python scripts/screenshots.py --set seed --weights-dir /path/to/seed/pths
    .venv/bin/python scripts/screenshots.py --demo-weights       # random seed-shape weights

The model set: `--set`/`--weights-dir` when given; otherwise the shipped set when
assets/models/ holds it, else the seed's when its checkpoints are on disk, else (with a
warning) random-weight seed-shape checkpoints, which show the interface but meaningless scores.
Clips come from ../shared/data (copied to a temporary folder, never into the repository).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED_DATA = REPO.parent / "shared" / "data"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 900}
DEMO_MODELS = "resnet,gnn,darts,lstm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_clips(n: int) -> list[tuple[str, str]]:
    """(label, path) of n short clips, half real and half fake, spread over the sources."""
    rows = list(csv.DictReader(open(SHARED_DATA / "manifest.csv", newline="", encoding="utf-8")))
    rows = [r for r in rows if 2.5 <= float(r["duration_s"] or 0) <= 8.0]
    out = []
    for label in ("real", "fake"):
        by_source: dict[str, list] = {}
        for r in sorted(rows, key=lambda r: r["path"]):
            if r["label"] == label:
                by_source.setdefault(r["path"].split("/")[1], []).append(r["path"])
        queues = [v for _, v in sorted(by_source.items())]
        while len([o for o in out if o[0] == label]) < n // 2 and any(queues):
            for q in queues:
                if q and len([o for o in out if o[0] == label]) < n // 2:
                    out.append((label, q.pop(0)))
    return out


def demo_weights(folder: Path) -> Path:
    import torch

    from core.models.registry import get_set

    s = get_set("seed")
    for i, name in enumerate(DEMO_MODELS.split(",")):
        torch.manual_seed(i)
        m = s.spec(name).build({})
        with torch.no_grad():  # random init gives near-constant scores: widen the heads
            for pname, p in m.named_parameters():
                if pname.endswith("fc.weight") or pname.endswith("conv2.lin.weight"):
                    p.copy_(torch.randn(p.shape) * 0.5)
        torch.save(m.state_dict(), folder / s.spec(name).checkpoint)
    return folder


def choose_set(args, tmp: Path) -> dict:
    """Environment for the app: which set, models and weights folder."""
    from core.loading import seed_available_offline
    from core.models.registry import get_set

    env = {}
    if args.weights_dir:
        env["DEEPFAKE_WEIGHTS_DIR"] = str(Path(args.weights_dir).resolve())
    shipped = get_set("shipped")
    if args.demo_weights:
        set_name = "seed"
    elif args.set:
        set_name = args.set
    elif all((shipped.shipped_dir / s.checkpoint).is_file() for s in shipped.specs):
        set_name = "shipped"
    elif seed_available_offline(args.weights_dir):
        set_name = "seed"
    else:
        print("warning: neither the shipped set nor the seed's checkpoints are available: "
              "the screenshots use RANDOM demo weights (the scores mean nothing)", file=sys.stderr)
        args.demo_weights = True
        set_name = "seed"
    if args.demo_weights:
        w = tmp / "demo_weights"
        w.mkdir()
        env["DEEPFAKE_WEIGHTS_DIR"] = str(demo_weights(w))
        env["DEEPFAKE_MODELS"] = args.models or DEMO_MODELS
    elif args.models:
        env["DEEPFAKE_MODELS"] = args.models
    env["DEEPFAKE_SET"] = set_name
    return env


def shrink(png: Path) -> None:
    """Palette PNG (256 colours): a third of the size, no visible change for a UI."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(png) as im:
        im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    ap.add_argument("--set", choices=["auto", "seed", "shipped"])
    ap.add_argument("--models", help="comma-separated subset, e.g. resnet,lstm")
    ap.add_argument("--weights-dir", help="folder with the seed's .pth files")
    ap.add_argument("--demo-weights", action="store_true", help="random seed-shape weights (interface only)")
    ap.add_argument("--clips", type=int, default=12, help="files in the batch (half real, half fake)")
    args = ap.parse_args()

    from playwright.sync_api import expect, sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="screenshots_"))
    proc = None
    try:
        env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), OMP_NUM_THREADS="1",
                   PYTHONPATH=str(REPO), **choose_set(args, tmp))
        root = tmp / "data"
        clips = pick_clips(args.clips)
        for label, rel in clips:
            dst = root / label / Path(rel).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SHARED_DATA / rel, dst)
        env["DEEPFAKE_DATA_ROOT"] = str(root)
        analyze_clip = root / "fake" / Path(next(r for lab, r in clips if lab == "fake")).name

        port = free_port()
        log = open(tmp / "streamlit.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        for _ in range(180):
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read().strip() == b"ok":
                    break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit((tmp / "streamlit.log").read_text()[-3000:])
                time.sleep(0.5)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport=VIEWPORT)
            nav = page.locator('[data-testid="stSidebarNav"]')

            def settle() -> None:
                page.wait_for_timeout(1500)  # let the data grids and plotly finish drawing

            def top(text: str) -> None:
                page.get_by_role("heading", name=text).first.evaluate("e => e.scrollIntoView({block: 'start'})")
                settle()

            def shot(name: str) -> None:
                path = out / f"{name}.png"
                page.screenshot(path=str(path))
                shrink(path)
                print(f"{path} ({path.stat().st_size // 1024} KB)")

            page.goto(url + "/", wait_until="domcontentloaded")
            expect(page.get_by_text("Active model set")).to_be_visible(timeout=180_000)
            top("Active model set")
            shot("home")

            nav.get_by_text("Analyze a file").click()
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(analyze_clip))
            expect(page.locator('[data-testid="stAlert"]', has_text="ensemble P(fake)")).to_be_visible(timeout=300_000)
            expect(page.locator(".js-plotly-plot", has_text="Mel spectrogram")).to_be_visible(timeout=120_000)
            settle()
            page.get_by_text("Drop an audio file").evaluate("e => e.scrollIntoView({block: 'start'})")
            settle()
            shot("analyze")
            top("Where it looks fake")
            shot("analyze_audio")

            nav.get_by_text("Batch scoring").click()
            page.get_by_text("A folder on the server").click()
            score = page.get_by_role("button", name=f"Score {len(clips)} files")
            expect(score).to_be_enabled(timeout=60_000)
            score.click()
            expect(page.locator(".js-plotly-plot", has_text="Ensemble verdicts")).to_be_visible(timeout=600_000)
            top("Results")
            shot("batch")

            nav.get_by_text("Compare models").click()
            expect(page.locator(".js-plotly-plot", has_text="ROC curves")).to_be_visible(timeout=120_000)
            top("Agreement between models")
            shot("compare")
            browser.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
