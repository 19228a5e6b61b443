"""Batch scoring: many uploads or a folder under the server's data root -> table, plots, CSV."""

import os

import streamlit as st

from core.errors import ConfigError
from core.paths import ENV_DATA_ROOT, data_root, keep_under_root, list_audio_under_root
from webui import plots, state, tables

SOURCES = {"uploads": "Upload files", "folder": "A folder on the server"}


def server_root():
    """(root, None) or (None, why not): the operator's root from secrets or the environment."""
    try:
        root = data_root(state.secret("data_root"))
    except ConfigError as e:
        return None, str(e)
    if root is None:
        return None, (f"No server folder is configured. The operator can set `{ENV_DATA_ROOT}` or "
                      "`data_root` in `.streamlit/secrets.toml`; only files under that folder can be read.")
    return root, None


@st.cache_data(ttl=30, show_spinner="Listing the folder...")
def list_folder(root: str, rel: str) -> list[str]:
    """Audio files under root/rel (refusals raise ConfigError and are not cached)."""
    return [str(p) for p in list_audio_under_root(root, rel)]


def choose_files() -> tuple[list, str, tuple]:
    """The page's input: (name, source) items, where they came from, and a signature."""
    source = st.radio("Files to score", list(SOURCES), format_func=SOURCES.get, key="batch_source",
                      horizontal=True)
    if source == "uploads":
        files = st.file_uploader("Drop audio files", type=state.UPLOAD_TYPES, accept_multiple_files=True,
                                 key="batch_upload")
        files = files or []
        return (state.upload_items(files), f"{len(files)} uploaded files",
                tuple(state.upload_hash(f) for f in files))
    root, why = server_root()
    if root is None:
        st.info(why)
        return [], "", ()
    st.markdown(f"Server data root: `{root}` — give a path relative to it, or an absolute path under it; nothing outside it can be read.")
    rel = st.text_input("Folder or file under the root", key="batch_folder", placeholder=". (everything)",
                        help=f"For example clips/, clips/real/one.wav or {root}/clips. '..' and paths "
                             "or links that lead outside the root are refused.")
    try:
        paths = keep_under_root(root, list_folder(str(root), rel or "."))  # links may have changed since
    except ConfigError as e:
        st.error(str(e))
        return [], "", ()
    items = [(os.path.relpath(p, root), str(p)) for p in paths]
    if not items:
        st.warning(f"No audio files under `{rel or '.'}`.")
    else:
        with st.expander(f"{len(items)} audio files found"):
            st.text("\n".join(n for n, _ in items[:200]) + ("\n..." if len(items) > 200 else ""))
    return items, f"folder `{rel or '.'}` under {root}", tuple(n for n, _ in items)


def batch_columns(df) -> dict:
    """Column settings: the file name pinned in front (the full path, whose start is only the
    folders, further right and in full), scores as bars, long texts wide."""
    cfg = {c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="%.3f")
           for c in df.columns if c.startswith("p_fake_")}
    cfg["name"] = st.column_config.TextColumn("name", pinned=True, width="medium",
                                              help="The file's name; its full path is in the file column.")
    cfg["file"] = st.column_config.TextColumn("file", width="large", help="The full path (or upload name).")
    for c in ("error", "warnings"):
        cfg[c] = st.column_config.TextColumn(c, width="large")
    return cfg


def show_results(run: state.BatchRun, sel: state.Selection) -> None:
    results = [tables.apply_threshold(r, sel.custom, state.CUSTOM_SOURCE) for r in run.results]
    names = run.model_names
    df = tables.with_names(tables.batch_frame(results, names))
    counts = tables.verdict_counts(results)
    st.subheader("Results")
    st.markdown(f"{len(results)} files from {run.origin}, set **{run.set_name}**: "
                f"**{counts['fake']}** likely fake, **{counts['real']}** likely real, "
                f"**{counts['error']}** could not be scored. P(fake): higher = more likely fake.")

    c1, c2, c3 = st.columns([3, 2, 3])
    verdicts = c1.multiselect("Verdict", ["fake", "real", "error"], default=["fake", "real", "error"],
                              key="batch_filter_verdict")
    min_p = c2.slider("Ensemble P(fake) at least", 0.0, 1.0, 0.0, 0.01, key="batch_filter_min")
    text = c3.text_input("File name contains", key="batch_filter_text")
    shown = df.assign(_v=df["verdict"].where(df["verdict"] != "", "error"))
    shown = shown[shown["_v"].isin(verdicts)]
    if min_p > 0:
        shown = shown[shown["p_fake_ensemble"].fillna(-1) >= min_p]
    if text:
        shown = shown[shown["file"].str.contains(text, case=False, regex=False)]
    shown = shown.drop(columns="_v")[tables.display_order(list(df.columns))]
    st.dataframe(shown, hide_index=True, width="stretch", column_config=batch_columns(df), key="batch_table")
    st.caption(f"Showing {len(shown)} of {len(df)} rows; click a column header to sort.")
    st.download_button("Download CSV (all rows, the CLI's columns)", tables.csv_bytes(results, names),
                       file_name="batch_scores.csv", mime="text/csv", key="batch_csv", type="primary")

    scores = tables.score_matrix(results, names)
    if len(scores):
        thr = sel.custom if sel.custom is not None else None
        left, right = st.columns([2, 1])
        left.plotly_chart(plots.histogram_figure(scores, thr), key="batch_hist")
        right.plotly_chart(plots.verdict_counts_figure(counts), key="batch_counts")
    bad = [r for r in results if r.error]
    if bad:
        with st.expander(f"{len(bad)} files could not be scored", expanded=True):
            for r in bad:
                st.error(r.error if r.error.startswith(r.file) else f"{r.file}: {r.error}")
    partial = [(r.file, m) for r in results if not r.error for m in r.models.values() if m.error]
    if partial:
        with st.expander(f"{len(partial)} model failures (the other models still scored those files)"):
            for f, m in partial:
                st.warning(f"{f}: model {m.name} failed: {m.error}")


def main() -> None:
    sel, det, err = state.page_setup("Batch scoring")
    st.title("Batch scoring")
    st.caption("Score many files with the models chosen in the sidebar; download the table as CSV "
               "(the same columns as `python -m core batch`). The Compare page uses the last batch.")
    items, origin, sig = choose_files()
    if det is None:
        state.show_load_error(sel, err)
    run_sig = (sig, state.selection_key(det, sel)) if det is not None else None
    last: state.BatchRun | None = st.session_state.get(state.K_LAST_BATCH)
    if st.button(f"Score {len(items)} files", key="batch_run", type="primary",
                 disabled=det is None or not items):
        if last is None or last.signature != run_sig:
            results = state.score_batch(det, items, "files")
            last = state.BatchRun(results, [m.name for m in det.models], det.set_name, origin, run_sig)
            st.session_state[state.K_LAST_BATCH] = last
    if last is None:
        st.info("Choose files and press Score.")
        return
    if items and last.signature != run_sig:
        st.caption("The table below is the last batch; press Score to score the files chosen above.")
    show_results(last, sel)


main()
