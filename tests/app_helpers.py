"""Helpers for the dashboard tests (tests/test_app_*.py, tests/test_browser.py).

The app is run against seed-shape checkpoints with random weights (conftest's
`seed_weights`), chosen with `$DEEPFAKE_WEIGHTS_DIR` and the set "seed", with a fast subset
of the models (no SENet154). The expected numbers always come from the engine itself, run
on the same file with the same checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
APP_MODELS = ("resnet", "gnn", "darts", "lstm")
TIMEOUT = 180


def shipped_set_present() -> bool:
    """True once the project's trained checkpoints are in assets/models/."""
    from core.models.registry import get_set

    s = get_set("shipped")
    return all((s.shipped_dir / spec.checkpoint).is_file() for spec in s.specs)


def new_app(page: str | None = None, models=APP_MODELS, set_name: str = "seed", **state):
    """An AppTest of the whole app (Home.py is the entry point) showing `page` after one run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=TIMEOUT)
    at.session_state["dd_set"] = set_name
    at.session_state["dd_models"] = list(models)
    # the language and speech check (a second per file with the real Whisper base) is off unless a
    # test turns it on: expected numbers come from an engine run without it
    at.session_state["dd_speech_check"] = False
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plotly_specs(at) -> dict[str, dict]:
    """The page's plotly charts as figure dicts, by the chart's widget key (or its position)."""
    out = {}
    for i, el in enumerate(at.get("plotly_chart")):
        spec = json.loads(el.proto.spec)
        key = el.proto.id.split("-")[-1] if el.proto.id else str(i)
        out[f"{i}:{key}"] = spec
    return out


def find_chart(at, title_part: str) -> dict:
    """The one plotly figure whose title contains `title_part`."""
    hits = [s for s in plotly_specs(at).values()
            if title_part.lower() in str(s.get("layout", {}).get("title", {}).get("text", "")).lower()]
    assert len(hits) == 1, f"{len(hits)} charts titled like {title_part!r}: " + ", ".join(
        str(s.get("layout", {}).get("title", {}).get("text")) for s in plotly_specs(at).values())
    return hits[0]


def click_chart(at, key_part: str, points: list[dict]):
    """Run the app as if the user had clicked `points` on the plotly chart whose key contains
    `key_part` (AppTest has no plotly interaction: the selection goes in as the widget's state)."""
    charts = [el for el in at.get("plotly_chart") if key_part in (el.proto.id or "")]
    assert len(charts) == 1, [el.proto.id for el in at.get("plotly_chart")]
    states = at._tree.get_widget_states()
    w = states.widgets.add()
    w.id = charts[0].proto.id
    w.string_value = json.dumps({"selection": {"points": points, "point_indices": list(range(len(points))),
                                             "box": [], "lasso": []}})
    return at._run(states)


def trace_names(fig: dict) -> list[str]:
    return [t.get("name") for t in fig["data"]]


def arr(v):
    """A trace array from plotly's JSON: a list, or a typed array {"dtype", "bdata", "shape"}."""
    import base64

    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape:
            a = a.reshape([int(x) for x in str(shape).split(",")])
        return a
    return np.asarray(v)


# -- the bytes behind st.download_button --------------------------------------------------------

_STORAGES: list = []


@pytest.fixture
def media_files(monkeypatch):
    """Keep every in-memory media store AppTest creates, so downloads can be read back."""
    import streamlit.testing.v1.app_test as app_test_mod
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    class Recording(MemoryMediaFileStorage):
        def __init__(self, endpoint):
            super().__init__(endpoint)
            _STORAGES.append(self)

    monkeypatch.setattr(app_test_mod, "MemoryMediaFileStorage", Recording)
    _STORAGES.clear()
    yield download_bytes
    _STORAGES.clear()


def download_bytes(button) -> bytes:
    """The data of a download button from the last run (needs the `media_files` fixture)."""
    name = os.path.basename(button.proto.url)
    for storage in reversed(_STORAGES):
        try:
            return storage.get_file(name).content
        except Exception:
            continue
    raise AssertionError(f"no media file {name} recorded")


# -- test audio -----------------------------------------------------------------------------------


def write_clip(path: Path, seconds: float, seed: int, sr: int = 16_000, **kw) -> Path:
    import soundfile as sf

    from conftest import speechlike

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, speechlike(seconds, sr, seed), sr, **kw)
    return path


def shared_clip(rel: str) -> Path | None:
    p = SHARED_DATA / rel
    return p if p.is_file() else None
