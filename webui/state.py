"""Session state, the sidebar every page shares, the cached detector and cached scoring.

State lives in `st.session_state` under explicit `dd_*` keys. Widgets use their own `w_*`
keys and copy their value into the `dd_*` key when changed, so the choice survives a page
switch (Streamlit forgets the state of a widget that is not drawn on the current page).

Models load once per server process (`st.cache_resource`, keyed by set, models, weights
folder and whether downloading is allowed). Scores are kept per browser session in
`st.session_state`, keyed by the file's SHA-256 and the model selection, so a rerun does
not score the same audio again and two sessions never see each other's results.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterable

import streamlit as st

from core.errors import DetectorError
from core.inference import Detector, FileResult
from core.report import utc_now
from core.loading import resolve_set_name
from core.models.registry import ALL_MODEL_NAMES, get_set
from core.weights import ENV_WEIGHTS_DIR

# -- keys -----------------------------------------------------------------------------------
K_SET = "dd_set"                    # "auto" | "seed" | "shipped"
K_MODELS = "dd_models"              # list of model names
K_THR_MODE = "dd_threshold_mode"    # THR_CARD | THR_CUSTOM
K_THR = "dd_custom_threshold"       # float in [0, 1]
K_DOWNLOAD = "dd_allow_download"    # bool: may the seed's checkpoints be downloaded
K_SEED_CROP = "dd_seed_crop"        # bool: score only the first window, as the seed app does
K_SPEECH = "dd_speech_check"        # bool: check language and speech (core/spoken.py) beside the score
K_ANALYZE = "dd_analyze_results"    # {(sha256, selection key): (FileResult | None, error | None)}
K_HASHES = "dd_upload_hashes"       # {upload file_id: sha256}
K_ANALYZED_AT = "dd_analysed_at"    # {(sha256, selection key): UTC time the result was computed}
K_LAST_BATCH = "dd_last_batch"      # BatchRun of the batch page (the Compare page reads it)
K_COMPARE = "dd_compare_run"        # BatchRun scored on the Compare page itself

THR_CARD, THR_CUSTOM = "card", "custom"
SET_CHOICES = ("auto", "seed", "shipped")
SET_LABELS = {
    "auto": "auto (seed if on disk, else shipped)",
    "seed": "seed (In-the-Wild, Hub)",
    "shipped": "shipped (this project)",
}
THR_LABELS = {THR_CARD: "Model card / EER threshold", THR_CUSTOM: "Custom value"}
CUSTOM_SOURCE = "custom value (sidebar)"
ANALYZE_CACHE_SIZE = 8

# Every extension the engine decodes (the browser's picker filters on these).
UPLOAD_TYPES = ["wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aac", "aif", "aiff"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


ENV_DEFAULT_SET = "DEEPFAKE_SET"          # the operator's default set for new sessions
ENV_DEFAULT_MODELS = "DEEPFAKE_MODELS"    # ... and default models, e.g. "resnet,lstm"


def defaults() -> dict:
    """Sidebar defaults for a new session: auto and all six, unless the operator set others."""
    set_name = (os.environ.get(ENV_DEFAULT_SET) or "auto").strip()
    wanted = [m.strip() for m in (os.environ.get(ENV_DEFAULT_MODELS) or "").split(",") if m.strip()]
    models = [m for m in ALL_MODEL_NAMES if m in wanted] or list(ALL_MODEL_NAMES)
    return {K_SET: set_name if set_name in SET_CHOICES else "auto", K_MODELS: models,
            K_THR_MODE: THR_CARD, K_THR: 0.5, K_SEED_CROP: False,
            K_SPEECH: True}


def init_state() -> None:
    for k, v in defaults().items():
        if k not in st.session_state:
            st.session_state[k] = v
    if K_DOWNLOAD not in st.session_state:  # opt-in: the seed's six files are about 700 MB
        st.session_state[K_DOWNLOAD] = False


def secret(name: str):
    """A value from `.streamlit/secrets.toml`, or None when there is no such file or key."""
    try:
        return st.secrets.get(name)
    except Exception:  # no secrets file at all: Streamlit raises rather than returning None
        return None


def weights_dir() -> str | None:
    """The local checkpoint folder: `$DEEPFAKE_WEIGHTS_DIR`, else `weights_dir` in secrets."""
    return os.environ.get(ENV_WEIGHTS_DIR) or secret("weights_dir") or None


@dataclass(frozen=True)
class Selection:
    """What the sidebar chose: which models to load and how to threshold their scores."""

    set_choice: str
    models: tuple[str, ...]
    weights_dir: str | None
    allow_download: bool
    threshold_mode: str
    custom_threshold: float
    seed_crop: bool = False
    speech_check: bool = True

    @property
    def custom(self) -> float | None:
        """The custom threshold, or None when each model's own (card / EER) threshold applies."""
        return float(self.custom_threshold) if self.threshold_mode == THR_CUSTOM else None

    @property
    def load_key(self) -> tuple:
        return (self.set_choice, self.models, self.weights_dir, self.allow_download)


def current_selection() -> Selection:
    init_state()
    ss = st.session_state
    models = tuple(m for m in ALL_MODEL_NAMES if m in ss[K_MODELS])
    return Selection(ss[K_SET], models, weights_dir(), bool(ss[K_DOWNLOAD]) and not _offline(),
                     ss[K_THR_MODE], float(ss[K_THR]), bool(ss[K_SEED_CROP]) and ss[K_SET] != "shipped",
                     bool(ss[K_SPEECH]))


def _copy(widget_key: str, store_key: str) -> None:
    st.session_state[store_key] = st.session_state[widget_key]


def _bound(widget, label: str, store_key: str, **kw):
    """Draw `widget` showing (and writing back to) the persistent `store_key`."""
    wkey = "w_" + store_key
    st.session_state[wkey] = st.session_state[store_key]
    return widget(label, key=wkey, on_change=_copy, args=(wkey, store_key), **kw)


def sidebar() -> Selection:
    """The model-set / models / threshold controls, identical on every page."""
    init_state()
    with st.sidebar:
        st.header("Models")
        _bound(st.selectbox, "Model set", K_SET, options=list(SET_CHOICES),
               format_func=lambda s: SET_LABELS[s],
               help="auto uses the seed's In-the-Wild checkpoints when they are already on disk "
                    "(weights folder or Hugging Face cache), otherwise the set shipped with this project.")
        _bound(st.multiselect, "Models", K_MODELS, options=list(ALL_MODEL_NAMES),
               help="The ensemble is the weighted mean P(fake) of the selected models: the set's ensemble "
                    "card gives the weights (renormalised over the selection; equal when none applies).")
        _bound(st.checkbox, "Allow downloading the seed's checkpoints", K_DOWNLOAD,
               disabled=_offline(),
               help="Fetch missing seed checkpoints (about 700 MB) from the Hugging Face Hub into its "
                    "cache. Disabled when HF_HUB_OFFLINE=1.")
        if st.session_state[K_SET] != "shipped":
            _bound(st.checkbox, "Seed crop: first window only, as the seed app", K_SEED_CROP,
                   help="Score only each model's first window (8.0 s for the seed's CNNs and GNN, 2.5 s "
                        "for DARTS and LSTM), normalised over the whole clip: reproduces the seed app's "
                        "number on any file, but the rest of a long file is not analysed.")
        _bound(st.checkbox, "Check language and speech", K_SPEECH,
               help="Multilingual Whisper (base) listens to each file's first 30 s: music or no speech, and a "
                    "language the models trained on little of either class, become cautions at the verdict "
                    "and push a borderline score to inconclusive. About a second per file.")
        st.header("Threshold")
        _bound(st.radio, "Verdict threshold", K_THR_MODE, options=[THR_CARD, THR_CUSTOM],
               format_func=lambda m: THR_LABELS[m],
               help="A file is called fake when P(fake) >= threshold. There is no universal "
                    "threshold: each model card gives the EER threshold from its validation set.")
        if st.session_state[K_THR_MODE] == THR_CUSTOM:
            _bound(st.slider, "Custom threshold (P(fake))", K_THR, min_value=0.0, max_value=1.0, step=0.01)
        st.caption("P(fake): higher = more likely fake.")
    return current_selection()


# -- models ---------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=3)
def _load_detector(set_choice: str, models: tuple[str, ...], weights: str | None,
                   allow_download: bool) -> tuple[Detector | None, str | None]:
    """Load once per process. A failure is cached too (retry with `reload_models()`).
    Names the resolved set does not have (whisper, for the seed's set) are left out."""
    try:
        resolved = resolve_set_name(set_choice, weights)
        in_set = {s.name for s in get_set(resolved).specs}
        chosen = [m for m in models if m in in_set]
        if not chosen:
            return None, f"none of the selected models ({', '.join(models)}) is in the {resolved} set"
        return Detector.from_set(set_choice, models=chosen, weights_dir=weights,
                                 allow_download=allow_download), None
    except DetectorError as e:
        return None, str(e)
    except Exception as e:  # a broken environment must show as a message, not a stack trace
        return None, f"{type(e).__name__}: {e}"


def get_detector(sel: Selection) -> tuple[Detector | None, str | None]:
    """(detector, None) or (None, error message). Never raises."""
    if not sel.models:
        return None, "No model selected: choose at least one model in the sidebar."
    note = " Downloading missing checkpoints can take minutes." if sel.allow_download else ""
    with st.spinner(f"Loading the models (once per server process).{note}"):
        det, err = _load_detector(*sel.load_key)
    if det is not None:
        seed_crop = sel.seed_crop and det.set_name == "seed"
        if seed_crop or sel.speech_check:   # the same loaded models, scored with these options
            det = Detector(det.loaded, seed_crop=seed_crop, spoken_check=sel.speech_check)
    return det, err


def reload_models() -> None:
    _load_detector.clear()


def show_load_error(sel: Selection, err: str) -> None:
    """The loading error, with what to do about it."""
    st.error(f"The model set could not be loaded: {err}")
    hints = []
    if sel.set_choice in ("seed", "auto"):
        hints.append("For the seed's set put its six `*_model_best_model.pth` files in a folder named by "
                     "`DEEPFAKE_WEIGHTS_DIR` or in the Hugging Face cache (`HF_HOME`) and press *Reload "
                     "models* on the Home page, or tick *Allow downloading* in the sidebar (needs internet). "
                     "The Home page explains each way.")
    if sel.set_choice in ("shipped", "auto"):
        hints.append("The shipped set needs `assets/models/*.safetensors` (and their `.json` cards) "
                     "in this checkout.")
    hints.append("Or switch the model set in the sidebar.")
    st.info("\n\n".join(hints))


def sidebar_status(det: Detector | None, err: str | None, sel: Selection) -> None:
    with st.sidebar:
        if det is None:
            st.error("No models loaded (see the page).")
            return
        sources = sorted({m.checkpoint.source for m in det.models})
        st.success(f"Active set: **{det.set_name}** ({len(det.models)} models, from {', '.join(sources)})")
        for name, why in det.loaded.skipped.items():
            st.warning(f"**{name}** could not be loaded and is left out of every score: {why}")
        if det.seed_crop:
            st.caption("Seed crop: only each model's first window of a file is scored, as the seed app does.")
        if sel.custom is None:
            st.caption(f"Ensemble threshold {det.loaded.ensemble_threshold:.3f} "
                       f"({det.loaded.ensemble_threshold_source}); each model uses its own card's.")
        else:
            st.caption(f"Every model and the ensemble use the custom threshold {sel.custom:.2f}.")


def page_setup(title: str, icon: str = ":material/graphic_eq:") -> tuple[Selection, Detector | None, str | None]:
    """Page config + sidebar + cached detector: the first lines of every page."""
    st.set_page_config(page_title=f"{title} · Deepfake audio workbench", page_icon=icon, layout="wide")
    sel = sidebar()
    det, err = get_detector(sel)
    sidebar_status(det, err, sel)
    return sel, det, err


def selection_key(det: Detector, sel: Selection) -> tuple:
    """What a cached score depends on: the resolved set and models and where they came from."""
    return (det.set_name, tuple(m.name for m in det.models), tuple(m.checkpoint.sha256 for m in det.models),
            det.seed_crop, det.spoken_check)


# -- uploads and scoring --------------------------------------------------------------------


def upload_hash(uploaded) -> str:
    """SHA-256 of an upload, computed once per upload (keyed by its file id)."""
    hashes = st.session_state.setdefault(K_HASHES, {})
    fid = getattr(uploaded, "file_id", None) or uploaded.name
    if fid not in hashes:
        hashes[fid] = hashlib.sha256(uploaded.getvalue()).hexdigest()
        while len(hashes) > 512:
            hashes.pop(next(iter(hashes)))
    return hashes[fid]


def score_upload(det: Detector, sel: Selection, uploaded) -> tuple[FileResult | None, str | None]:
    """Score one upload with a progress bar, or return the cached result for the same bytes."""
    key = (upload_hash(uploaded), selection_key(det, sel))
    cache: dict = st.session_state.setdefault(K_ANALYZE, {})
    if key in cache:
        return cache[key]
    name = uploaded.name
    bar = st.progress(0.0, text=f"Scoring {name}...")

    def progress(done_s: float, total_s: float) -> None:
        frac = min(1.0, done_s / total_s) if total_s > 0 else 0.0
        bar.progress(frac, text=f"Scoring {name}: {done_s:.0f} of {total_s:.0f} s decoded")

    try:
        out = (det.score(uploaded.getvalue(), name=name, progress=progress), None)
    except DetectorError as e:
        out = (None, str(e))
    except Exception as e:  # never a stack trace for a file
        out = (None, f"{name}: unexpected failure ({type(e).__name__}: {e})")
    finally:
        bar.empty()
    cache[key] = out
    times = st.session_state.setdefault(K_ANALYZED_AT, {})
    times[key] = utc_now()
    while len(cache) > ANALYZE_CACHE_SIZE:
        times.pop(next(iter(cache)), None)
        cache.pop(next(iter(cache)))
    return out


def analysed_at(uploaded, det: Detector, sel: Selection) -> str:
    """When the result on screen was computed (UTC, ISO 8601): the same time in its JSON and report."""
    key = (upload_hash(uploaded), selection_key(det, sel))
    return st.session_state.setdefault(K_ANALYZED_AT, {}).setdefault(key, utc_now())


@dataclass
class BatchRun:
    """The results of one batch, kept in session state for the table, the CSV and Compare."""

    results: list[FileResult]
    model_names: list[str]
    set_name: str
    origin: str                 # "3 uploaded files" / "folder clips/ under /data"
    signature: tuple = ()       # what was scored (to know whether a rerun is needed)


def score_batch(det: Detector, items: list[tuple[str, object]], what: str) -> list[FileResult]:
    """Score many (name, source) items with a progress bar; bad files come back as error results."""
    total = len(items)
    bar = st.progress(0.0, text=f"Scoring {total} {what}...")

    def progress(done: int, n: int) -> None:
        bar.progress(min(1.0, done / n) if n else 1.0, text=f"Scored {done} of {n} {what}")

    try:
        return list(det.score_many(items, progress=progress))
    finally:
        bar.empty()


def upload_items(files: Iterable) -> list[tuple[str, bytes]]:
    """Uploads -> (name, bytes) items; two uploads with one name keep both, numbered."""
    seen: dict[str, int] = {}
    items = []
    for f in files:
        name = f.name
        if name in seen:
            seen[name] += 1
            stem, dot, ext = name.rpartition(".")
            name = f"{stem} ({seen[f.name]}).{ext}" if dot else f"{name} ({seen[f.name]})"
        else:
            seen[name] = 1
        items.append((name, f.getvalue()))
    return items

