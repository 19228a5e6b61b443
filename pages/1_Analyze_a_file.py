"""Analyze a file: upload, listen, see the waveform and spectrogram, the verdict, where it looks fake."""

import json
import mimetypes
from pathlib import Path

import pandas as pd
import streamlit as st

from core import report
from core.errors import DetectorError
from core.explain import OcclusionMap, occlusion_map, read_span
from core.features import FrontEnd
from webui import cards, display, plots, state, tables

CNN_FAMILIES = ("senet", "resnet", "res2net")   # offered first for the occlusion map


@st.cache_data(max_entries=4, show_spinner="Drawing the waveform and spectrogram...")
def audio_view(sha256: str, _data: bytes, name: str):
    """Display data for one file, cached by its hash (the bytes themselves are not hashed again)."""
    return display.audio_view(_data, name)


@st.cache_data(max_entries=4, show_spinner="Writing the case report...")
def case_report_html(sha256: str, _data: bytes, name: str, _res, _det, analysed_at: str) -> str:
    """The case report of the result on screen (cached by the file's hash and the analysis time)."""
    return report.build_html(_res, _det, report.file_identity(_data, name), report.report_samples(_data, name),
                             analysed_at, report.app_version())


@st.cache_data(max_entries=16, show_spinner="Hiding one time-frequency patch at a time...")
def occlusion(sha256: str, model: str, checkpoint_sha: str, start_s: float, end_s: float,
              _det, _data: bytes, name: str) -> OcclusionMap:
    """The occlusion map of one model on one window of one file, computed once per window."""
    m = next(m for m in _det.models if m.name == model)
    return occlusion_map(m, read_span(_data, start_s, end_s, name))


def show_verdict(res, det) -> None:
    ens = res.ensemble
    thr_src = ens.threshold_source
    a = res.assessment
    word = tables.assessment_word(res)
    label = a.label if a else ens.verdict
    box = {"likely fake": st.error, "fake": st.error, "likely real": st.success, "real": st.success}.get(label,
                                                                                                      st.warning)
    band = (f" Inconclusive band [{a.band.low:.2f}, {a.band.high:.2f}) ({a.band.source})." if a else "")
    box(f"**{word}** — ensemble P(fake) = **{tables.fmt_p(ens.p_fake)}** "
        f"(threshold {ens.threshold:.3f}, {thr_src}). Higher = more likely fake.{band}")
    if a is not None:
        for why in a.reasons:
            st.caption(f"Inconclusive because {why}.")
        for c in a.cautions:
            st.warning(f"Caution: {c}")
    c = st.columns(3)
    c[0].metric("Ensemble P(fake)", tables.fmt_p(ens.p_fake),
                help="Weighted mean of the models' P(fake); the ensemble row of the table below gives the weights.")
    c[1].metric("Models saying fake",
                f"{sum(m.verdict == 'fake' for m in res.models.values())} of {len(res.models)}")
    c[2].metric("Peak window P(fake)", tables.fmt_p(ens.max_p_fake),
                help="The highest P(fake) of the ensemble timeline: where in the file it looks most fake.")
    st.caption("How far to trust this: " + cards.unseen_sentence(det))
    failed = [m for m in res.models.values() if m.error]
    for m in failed:
        st.error(f"Model {m.name} failed on this file: {m.error}. The other models still report.")


def show_model_table(res, det) -> None:
    """The per-model table at full width, wide text columns sized so nothing is cut at desktop widths."""
    families = {m.name: m.spec.family for m in det.models}
    df = tables.model_table(res, families)
    if not df["error"].astype(bool).any():
        df = df.drop(columns="error")
    st.dataframe(df, hide_index=True, width="stretch", key="analyze_models",
                 column_config={
                     "model": st.column_config.TextColumn(width="small", pinned=True),
                     "family": st.column_config.TextColumn(width="medium"),
                     "P(fake)": st.column_config.ProgressColumn(
                         "P(fake)", min_value=0.0, max_value=1.0, format="%.3f", width="small"),
                     "verdict": st.column_config.TextColumn(width="small"),
                     "threshold": st.column_config.NumberColumn(format="%.3f", width="small"),
                     "threshold source": st.column_config.TextColumn(width="large"),
                     "max window P(fake)": st.column_config.NumberColumn(format="%.3f", width="small"),
                     "windows over threshold": st.column_config.NumberColumn(format="percent", width="small"),
                     "weights": st.column_config.TextColumn(width="medium"),
                     "error": st.column_config.TextColumn(width="large")})


def show_facts(res, det) -> None:
    st.markdown("**The file**")
    # st.table wraps long values (the bandwidth, the decoder) instead of cutting them off
    st.table(pd.DataFrame(tables.facts_rows(res), columns=["fact", "value"]).set_index("fact"))
    warns = res.warnings(det.shortest_window_s)
    for w in warns:
        st.warning(w)
    if not warns:
        st.caption("No warnings about the recording itself.")


def play_labels(choices) -> list[str]:
    return ["the start"] + [f"P(fake) {p:.3f} at {a:.1f}-{b:.1f} s" + (" · over threshold" if over else "")
                            for a, b, p, over in choices]


def show_timeline(res, det, up, data) -> None:
    """Where it looks fake: the timeline (a click on it seeks the player), the most suspicious
    moments first in the "Play from" list, and the player starting at the chosen one."""
    st.subheader("Where it looks fake")
    h = state.upload_hash(up)[:12]
    k_start, k_pick, k_chart = f"analyze_start_{h}", f"analyze_play_from_{h}", f"analyze_timeline_{h}"
    choices = tables.window_choices(res)
    labels = play_labels(choices)

    def picked() -> None:
        i = st.session_state[k_pick]
        if i is not None:
            st.session_state[k_start] = 0.0 if i == 0 else choices[i - 1][0]

    def clicked() -> None:   # the list then shows the clicked cell (or the click, when it is not listed)
        t = tables.start_from_selection(st.session_state[k_chart].selection.get("points", []))
        if t is not None:
            st.session_state[k_start] = t
            st.session_state[k_pick] = next((i + 1 for i, c in enumerate(choices) if c[0] <= t < c[1]), None)

    start = float(st.session_state.get(k_start, 0.0))
    st.selectbox("Play from", range(len(labels)), format_func=lambda i: labels[i], key=k_pick, on_change=picked,
                 placeholder=f"{start:.1f} s, clicked on the timeline",
                 help="The half-second cells of the ensemble timeline, most suspicious first (those over "
                      "threshold are marked); or click a point on the timeline below.")
    if len(choices) < len(res.ensemble.windows):
        st.caption(f"Listing the {len(choices)} most suspicious of {len(res.ensemble.windows)} half-second cells.")
    st.plotly_chart(plots.timeline_figure(res, selected=start if start > 0 else None), key=k_chart,
                    on_select=clicked, selection_mode="points")
    mime = up.type if (up.type or "").startswith("audio/") else (mimetypes.guess_type(up.name)[0] or "audio/wav")
    st.audio(data, format=mime, start_time=int(start))
    st.caption(f"Playing from {start:.1f} s. Windows: "
               f"{', '.join(f'{k} {v:.2f} s' for k, v in det.info()['windows_s'].items())}, "
               f"hop {det.hop_fraction:.0%} of a window; the ensemble timeline is on a 0.5 s grid. "
               f"Analysed {res.facts.analysed_s:.1f} of {res.facts.duration_s:.1f} s.")


def occlusion_models(res, det) -> list:
    """Models an occlusion map can explain (a mel-like front end, a score for this file), CNNs first."""
    ok = [m for m in det.models if isinstance(m.spec.front_end, FrontEnd)
          and m.name in res.models and tables.suspicious_window(res.models[m.name])]
    return sorted(ok, key=lambda m: (m.name not in CNN_FAMILIES, det.models.index(m)))


def show_occlusion(res, det, up, data) -> None:
    """Where in frequency: for a chosen model, which bands of its most suspicious window carry
    its P(fake). Computed on request (it costs 80 forward passes), then kept."""
    st.subheader("Where in frequency")
    models = occlusion_models(res, det)
    if not models:
        st.caption("No model with a mel-like front end scored this file.")
        return
    name = st.selectbox("Model", [m.name for m in models], key="analyze_occlusion_model",
                        format_func=lambda n: f"{n} ({next(m.spec.family for m in models if m.name == n)})",
                        help="Its most suspicious window is cut into 8 frequency bands x 10 time cells of the "
                             "model's own input; each patch is hidden in turn (set to the features' mean) and "
                             "the window scored again.")
    m = next(m for m in models if m.name == name)
    a, b = tables.suspicious_window(res.models[name])
    key = (state.upload_hash(up), name, m.checkpoint.sha256, a, b)
    asked: set = st.session_state.setdefault("analyze_occlusion_asked", set())
    if st.button(f"Show where in frequency {name} looks ({a:.1f}-{b:.1f} s)", key="analyze_occlusion_run"):
        asked.add(key)
    if key not in asked:
        return
    try:
        occ = occlusion(key[0], name, m.checkpoint.sha256, a, b, det, data, up.name)
    except DetectorError as e:
        st.error(str(e))
        return
    st.plotly_chart(plots.occlusion_figure(occ, a, b), key="analyze_occlusion")
    st.caption("Red: hiding that patch lowers the model's P(fake), so it is where the model finds the "
               "window fake; blue: hiding it raises P(fake). The models see 0-8 kHz only.")


def main() -> None:
    sel, det, err = state.page_setup("Analyze a file")
    st.title("Analyze a file")
    st.caption("P(fake): the probability that the speech was generated by a model — higher = more likely fake.")
    up = st.file_uploader("Drop an audio file", type=state.UPLOAD_TYPES, key="analyze_upload",
                          help="wav, flac, ogg, opus, mp3, m4a/aac and more; long recordings are fine.")
    if det is None:
        state.show_load_error(sel, err)
        return
    if up is None:
        st.info("Upload a recording to score it with the models chosen in the sidebar.")
        return
    data = up.getvalue()
    raw, error = state.score_upload(det, sel, up)
    if error:
        st.error(error)
        return
    res = tables.apply_threshold(raw, sel.custom, state.CUSTOM_SOURCE)

    left, right = st.columns([2, 1])
    with left:
        show_verdict(res, det)
    with right:
        show_facts(res, det)

    show_model_table(res, det)
    show_timeline(res, det, up, data)

    st.subheader("The audio")
    try:
        view = audio_view(state.upload_hash(up), data, up.name)
    except DetectorError as e:
        st.error(str(e))
    except Exception as e:  # the verdict stands even if drawing fails
        st.error(f"{up.name}: cannot draw the audio ({type(e).__name__}: {e})")
    else:
        st.plotly_chart(plots.waveform_figure(view), key="analyze_waveform")
        st.plotly_chart(plots.spectrogram_figure(view), key="analyze_spectrogram")
        if view.nyquist_hz > display.MODEL_BAND_HZ:
            st.caption(f"Drawn at the file's own {view.spec_rate} Hz. The models hear it resampled to 16 kHz: "
                       "only what lies below the dashed 8 kHz line reaches them.")
    show_occlusion(res, det, up, data)

    full = res.as_dict()
    full.update(sha256=state.upload_hash(up), size_bytes=len(data), analysed_at=state.analysed_at(up, det, sel),
                app_version=report.app_version())
    st.download_button("Download the case report (HTML)", case_report_html(state.upload_hash(up), data, up.name, res, det,
                                                                        full["analysed_at"]),
                       file_name=f"{Path(up.name).stem}.case-report.html", mime="text/html",
                       key="analyze_report", help="One self-contained page to attach to a case: the file's hash, "
                       "the time, the models and their checkpoints, the assessment, the figures, a disclaimer.")
    st.download_button("Download the full result (JSON)", json.dumps(full, indent=1, default=str),
                       file_name=f"{Path(up.name).stem}.deepfake.json", mime="application/json",
                       key="analyze_json")
    if sum(len(m.windows) for m in res.models.values()) <= 2000:
        with st.expander("Full result (JSON)"):
            st.json(full, expanded=False)


main()
