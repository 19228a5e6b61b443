"""Compare models: scores side by side, agreement between models, and accuracy against labels."""

import io

import numpy as np
import pandas as pd
import streamlit as st

from webui import plots, state, tables

SOURCES = {"batch": "The last batch", "uploads": "Upload files here"}
LABEL_SOURCES = {"none": "No labels", "folders": "real/ and fake/ in the file paths",
                 "table": "A labels CSV (manifest)"}
MAX_BARS = 30        # files in the grouped bar chart at most (the heatmap shows every file)
HEATMAP_VIEW_PX = 900  # a taller heatmap scrolls inside a box this high


def get_run(det, sel) -> state.BatchRun | None:
    last = st.session_state.get(state.K_LAST_BATCH)
    if "compare_source" not in st.session_state:
        st.session_state["compare_source"] = "batch" if last is not None else "uploads"
    source = st.radio("Files", list(SOURCES), format_func=SOURCES.get, key="compare_source", horizontal=True)
    if source == "batch":
        if last is None:
            st.info("No batch scored in this session yet: score one on the Batch scoring page, "
                    "or upload files here.")
        return last
    files = st.file_uploader("Drop audio files", type=state.UPLOAD_TYPES, accept_multiple_files=True,
                             key="compare_upload") or []
    run: state.BatchRun | None = st.session_state.get(state.K_COMPARE)
    if det is not None:
        sig = (tuple(state.upload_hash(f) for f in files), state.selection_key(det, sel))
        if files and (run is None or run.signature != sig):
            results = state.score_batch(det, state.upload_items(files), "files")
            run = state.BatchRun(results, [m.name for m in det.models], det.set_name,
                                 f"{len(files)} uploaded files", sig)
            st.session_state[state.K_COMPARE] = run
    if not files:
        st.info("Drop files here to score and compare them, or score a batch on the Batch scoring page.")
        return None
    return run


def choose_labels(files: list[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """The labels ({file: 1 fake / 0 real}) and, from a manifest with `source_repo` / `generator`
    (or `attack_type`) columns, each file's groups for the breakdown."""
    from_paths = tables.labels_from_paths(files)
    if "compare_label_source" not in st.session_state:
        st.session_state["compare_label_source"] = "folders" if from_paths else "none"
    how = st.radio("Labels", list(LABEL_SOURCES), format_func=LABEL_SOURCES.get, key="compare_label_source",
                   horizontal=True, help="With labels each model gets its EER, ROC curve and confusion matrix.")
    if how == "folders":
        st.caption(f"Labels from folder names for {len(from_paths)} of {len(files)} files "
                   "(a `fake/` or `spoof/` folder means fake, `real/` or `bona-fide/` real).")
        return from_paths, {}
    if how == "table":
        up = st.file_uploader("Labels CSV: a column with the file path or name, a column with the label",
                              type=["csv"], key="compare_labels_csv")
        if up is None:
            return {}, {}
        try:
            table = pd.read_csv(io.BytesIO(up.getvalue()), dtype=str, keep_default_na=False)
        except Exception as e:
            st.error(f"{up.name}: cannot read it as CSV ({e})")
            return {}, {}
        cols = list(table.columns)
        if len(cols) < 2:
            st.error(f"{up.name}: needs at least two columns (a path and a label); found {cols}")
            return {}, {}
        c1, c2, c3 = st.columns(3)
        path_col = c1.selectbox("Path column", cols, key="compare_path_col",
                                index=next((cols.index(c) for c in ("path", "file", "filename") if c in cols), 0))
        label_col = c2.selectbox("Label column", cols, key="compare_label_col",
                                 index=next((cols.index(c) for c in ("label", "class", "truth") if c in cols),
                                            min(1, len(cols) - 1)))
        values = sorted(v for v in table[label_col].unique() if str(v).strip())
        fake_values = c3.multiselect("Values meaning fake", values, default=tables.default_fake_values(values),
                                     key=f"compare_fake_values_{label_col}")
        labels, missing = tables.labels_from_table(table, path_col, label_col, fake_values, files)
        st.caption(f"Matched labels for {len(labels)} of {len(files)} files"
                   + (f"; no label for: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
                      if missing else "") + ".")
        return labels, tables.groups_from_table(table, path_col, files)
    return {}, {}


def show_label_metrics(scores: pd.DataFrame, verdicts: pd.DataFrame, labels: dict[str, int]) -> None:
    lm = tables.label_metrics(scores, verdicts, labels)
    summ = lm["summary"]
    n_fake, n_real = sum(labels.values()), len(labels) - sum(labels.values())
    st.markdown(f"**{len(labels)} labelled files** ({n_fake} fake, {n_real} real). EER: the error rate "
                "where real files called fake equal fake files missed (lower is better); its threshold is "
                "the P(fake) where that happens. Confusion matrices use each model's own threshold.")
    st.dataframe(summ, hide_index=True, width="stretch",
                 column_config={"EER": st.column_config.NumberColumn(format="percent"),
                                "accuracy at threshold": st.column_config.NumberColumn(format="percent"),
                                "note": st.column_config.TextColumn(width="large")})
    inverse = [r["model"] for _, r in summ.iterrows() if r["AUC"] == r["AUC"] and r["AUC"] < 0.5]
    if inverse:
        st.warning(f"AUC below 0.5 for {', '.join(inverse)}: on this data it ranks inversely, scoring real "
                   "files higher than fakes. That is worse than chance, not a detector to flip: these files "
                   "differ from what it learned (another generator, codec or recording chain).")
    if lm["roc"]:
        st.plotly_chart(plots.roc_figure(lm["roc"]), key="compare_roc")
    else:
        st.info("ROC curves and EER need both real and fake files among the labelled ones.")
    cms = lm["confusion"]
    if cms:
        st.caption("Confusion matrices at each model's own threshold.")
        cols = st.columns(min(3, len(cms)))
        for i, (name, cm) in enumerate(cms.items()):
            with cols[i % len(cols)]:
                st.plotly_chart(plots.confusion_figure(cm, name), key=f"compare_cm_{name}")


def show_breakdown(scores: pd.DataFrame, verdicts: pd.DataFrame, labels: dict[str, int],
                   groups: dict[str, dict[str, str]]) -> None:
    """Per source and per generator: a detector that is fine overall can fail on one generator."""
    st.markdown("**Per group** (from the manifest's " + ", ".join(f"`{c}`" for c in groups) + " columns)")
    c1, c2 = st.columns(2)
    col = c1.radio("Group by", list(groups), key="compare_group_by", horizontal=True)
    metric = c2.radio("Metric", list(tables.GROUP_METRICS), key="compare_group_metric", horizontal=True)
    df = tables.group_metrics(scores, verdicts, labels, groups[col], metric)
    fmt = "percent" if metric != "AUC" else "%.3f"
    st.dataframe(df, hide_index=True, width="stretch", key="compare_groups",
                 column_config={"group": st.column_config.TextColumn(width="medium", pinned=True),
                                **{c: st.column_config.NumberColumn(format=fmt) for c in scores.columns}})
    st.caption("EER and AUC need real and fake files: a group of fakes only (one generator) is ranked against "
               "every labelled real file, a group of real files against every fake (see *compared with*). "
               "Accuracy is on the group's own files, at each model's threshold.")


def main() -> None:
    sel, det, err = state.page_setup("Compare models")
    st.title("Compare models")
    st.caption("Where the models agree and where they do not. P(fake): higher = more likely fake.")
    if det is None:
        state.show_load_error(sel, err)
    run = get_run(det, sel)
    if run is None:
        return
    results = [tables.apply_threshold(r, sel.custom, state.CUSTOM_SOURCE) for r in run.results]
    names = run.model_names
    scores = tables.score_matrix(results, names)
    verdicts = tables.verdict_matrix(results, names)
    bad = [r for r in results if r.error]
    st.markdown(f"{len(scores)} scored files from {run.origin} (set **{run.set_name}**, models "
                f"{', '.join(names)})" + (f"; {len(bad)} could not be scored" if bad else "") + ".")
    for r in bad:
        st.error(r.error)
    if scores.empty:
        return

    st.subheader("Scores side by side")
    files = list(scores.index)
    short = dict(zip(files, tables.short_labels(files)))
    pick = st.multiselect("Files in the bar chart", files, default=files[:min(MAX_BARS, 20)],
                          key="compare_bar_files", max_selections=MAX_BARS, format_func=short.get,
                          help=f"At most {MAX_BARS}, so the bars stay readable; the heatmap below shows every file.")
    if pick:
        st.plotly_chart(plots.grouped_bars_figure(scores.loc[pick], sel.custom), key="compare_bars")
    heat = plots.heatmap_figure(scores)
    if heat.layout.height > HEATMAP_VIEW_PX:
        st.caption(f"{len(files)} files: scroll inside the heatmap; hover a row for its full path.")
        with st.container(height=HEATMAP_VIEW_PX, border=False):
            st.plotly_chart(heat, key="compare_heatmap")
    else:
        st.plotly_chart(heat, key="compare_heatmap")

    st.subheader("Agreement between models")
    if len(names) < 2:
        st.info("Agreement needs at least two models: choose more in the sidebar.")
    else:
        pct, kap, fleiss, n_used = tables.agreement(verdicts)
        c = st.columns(3)
        c[0].metric("Fleiss' kappa (all models)", "n/a" if np.isnan(fleiss) else f"{fleiss:.3f}",
                    help="Agreement of all models beyond chance: 1 = always agree, 0 = chance level.")
        c[1].metric("Files every model scored", n_used)
        split = tables.split_files(verdicts, scores.drop(columns=[tables.ENSEMBLE]))
        c[2].metric("Files where the models split", len(split))
        left, right = st.columns(2)
        left.plotly_chart(plots.matrix_figure(pct, "Percent agreement", 0, 1, "{:.0%}"), key="compare_pct")
        right.plotly_chart(plots.matrix_figure(kap, "Cohen's kappa", -1, 1), key="compare_kappa")
        st.caption("Verdicts at each model's threshold (its card's, or the custom value from the sidebar).")
        st.markdown("**Files where the models split**")
        if split.empty:
            st.caption("None: on every file all models give the same verdict.")
        else:
            split = tables.with_names(split)
            st.dataframe(split[["name", *[c for c in split.columns if c not in ("name", "file")], "file"]],
                         hide_index=True, width="stretch", key="compare_split",
                         column_config={"name": st.column_config.TextColumn(pinned=True, width="medium"),
                                        "file": st.column_config.TextColumn(width="large")})

    st.subheader("Against labels")
    labels, groups = choose_labels(files)
    if labels:
        with_ens = tables.verdict_matrix(results, names, ensemble=True)
        show_label_metrics(scores, with_ens, labels)
        if groups:
            show_breakdown(scores, with_ens, labels, groups)


main()
