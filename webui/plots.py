"""Plotly figures for the pages. Every figure says P(fake) means "higher = more likely fake"
where it plots one, labels time in seconds and frequency in Hz. No streamlit here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.inference import FileResult

from core.explain import OcclusionMap

from .display import DB_FLOOR, MODEL_BAND_HZ, AudioView
from .tables import ENSEMBLE, over_threshold_spans, short_labels

P_AXIS = "P(fake) (higher = more likely fake)"
FAKE_COLOUR = "#d62728"
REAL_COLOUR = "#2ca02c"
ENSEMBLE_COLOUR = "#111111"
PALETTE = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


def colorscale(name: str) -> list[list]:
    """A named plotly colour scale as explicit rgb() stops. Why: Streamlit's chart theme swaps
    colours "#000001"-"#000040" for its own theme colours (they are its placeholders), and
    Magma's darkest stop is "#000004": left as it is, silence in a spectrogram turns pink."""
    from plotly.colors import get_colorscale, hex_to_rgb

    return [[pos, f"rgb{hex_to_rgb(c)}" if c.startswith("#") else c] for pos, c in get_colorscale(name)]


def _layout(fig: go.Figure, title: str, height: int = 320, note: str | None = None, **kw) -> go.Figure:
    """Shared look. A long explanation goes in `note`, a smaller second title line: plotly does
    not wrap titles, so a short first line is what keeps the title whole on a phone."""
    text = title + (f"<br><sup>{note}</sup>" if note else "")
    fig.update_layout(title=dict(text=text, x=0, xanchor="left"), height=height,
                      margin=dict(l=60, r=20, t=70 if note else 50, b=45), legend=dict(orientation="h", y=-0.25),
                      **kw)
    return fig


def colour_of(i: int, name: str) -> str:
    return ENSEMBLE_COLOUR if name == ENSEMBLE else PALETTE[i % len(PALETTE)]


# -- one file -------------------------------------------------------------------------------


def waveform_figure(view: AudioView) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=view.env_t, y=view.env_max, name="max", mode="lines",
                             line=dict(width=0.8, color="#1f77b4"), showlegend=False))
    fig.add_trace(go.Scatter(x=view.env_t, y=view.env_min, name="min", mode="lines", fill="tonexty",
                             line=dict(width=0.8, color="#1f77b4"), showlegend=False))
    fig.update_xaxes(title="Time (s)", range=[0, max(view.duration_s, 1e-3)])
    fig.update_yaxes(title="Amplitude", range=[-1.05, 1.05])
    return _layout(fig, "Waveform (mono, 16 kHz)", height=220)


def spectrogram_figure(view: AudioView) -> go.Figure:
    """The file's mel spectrogram up to its own Nyquist frequency, on a fixed dB scale relative
    to its peak (so silence is the floor colour), with the models' 0-8 kHz band marked."""
    fig = go.Figure(go.Heatmap(
        x=view.spec_t, y=view.spec_f, z=view.spec_db, name="mel spectrogram", colorscale=colorscale("Magma"),
        zmin=DB_FLOOR, zmax=0.0, colorbar=dict(title=dict(text="dB re peak")),
        hovertemplate="%{x:.2f} s<br>%{y:.0f} Hz<br>%{z:.1f} dB re peak<extra></extra>"))
    shapes, notes = [], []
    if view.nyquist_hz > MODEL_BAND_HZ + 1:
        shapes.append(dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=MODEL_BAND_HZ, y1=MODEL_BAND_HZ,
                           line=dict(dash="dash", color="#7fdbff", width=1.5)))
        notes.append(dict(xref="paper", yref="y", x=1, y=MODEL_BAND_HZ, xanchor="right", yanchor="bottom",
                          text="models: 0-8 kHz", showarrow=False,
                          bgcolor="rgba(0,0,0,0.55)", font=dict(size=11, color="#7fdbff")))
    fig.update_layout(shapes=shapes, annotations=notes)
    fig.update_xaxes(title="Time (s)", range=[0, max(view.duration_s, 1e-3)])
    fig.update_yaxes(title="Frequency (Hz)", range=[0, view.nyquist_hz])
    return _layout(fig, f"Mel spectrogram, 0-{view.nyquist_hz / 1000:g} kHz", height=330,
                   note=f"at the file's own {view.spec_rate} Hz; dB re its peak")


def band_labels(lo_hz, hi_hz) -> list[str]:
    return [f"{lo / 1000:.1f}-{hi / 1000:.1f} kHz" for lo, hi in zip(lo_hz, hi_hz)]


def occlusion_figure(occ: OcclusionMap, start_s: float, end_s: float) -> go.Figure:
    """Drop in P(fake) when each time-frequency patch is hidden: red where the model looks.
    One equal row per band group of the model's own filterbank (mel bands are narrow low down)."""
    lim = max(float(np.abs(occ.drop).max()), 1e-6)
    fig = go.Figure(go.Heatmap(
        x=start_s + occ.time_s, y=band_labels(occ.freq_lo_hz, occ.freq_hi_hz), z=occ.drop, zmin=-lim, zmax=lim,
        zmid=0.0, colorscale=colorscale("RdBu_r"), name="drop in P(fake)",
        colorbar=dict(title=dict(text="drop in<br>P(fake)")),
        hovertemplate="%{x:.2f} s, %{y}<br>hiding it lowers P(fake) by %{z:.3f}<extra></extra>"))
    fig.update_xaxes(title="Time (s)", range=[start_s, end_s])
    fig.update_yaxes(title="the model's bands (0-8 kHz)", type="category")
    return _layout(fig, f"Where in frequency: {occ.model}", height=330,
                   note=f"its most suspicious window, {start_s:.1f}-{end_s:.1f} s (P(fake) {occ.p_fake:.3f})")


def timeline_figure(res: FileResult, selected: float | None = None) -> go.Figure:
    """Per-window P(fake) of each model and the ensemble; ensemble spans over threshold shaded."""
    fig = go.Figure()
    ens = res.ensemble
    shapes: list[dict] = []
    notes: list[dict] = []
    for i, (name, m) in enumerate(res.models.items()):
        if m.p_fake is None or not m.windows:
            continue
        x = [(w.start + w.end) / 2 for w in m.windows]
        fig.add_trace(go.Scatter(
            x=x, y=[w.p_fake for w in m.windows], name=name, mode="lines+markers",
            line=dict(width=1, color=colour_of(i, name)), marker=dict(size=5), opacity=0.75,
            customdata=[[w.start, w.end] for w in m.windows],
            hovertemplate=name + " %{customdata[0]:.1f}-%{customdata[1]:.1f} s: %{y:.3f}<extra></extra>"))
    over = [(m.name, w) for m in res.models.values() if m.p_fake is not None
            for w in m.windows if w.p_fake >= m.threshold]
    if over:
        fig.add_trace(go.Scatter(x=[(w.start + w.end) / 2 for _, w in over], y=[w.p_fake for _, w in over],
                                 name="window over its model's threshold", mode="markers",
                                 marker=dict(symbol="x", size=9, color=FAKE_COLOUR), text=[n for n, _ in over],
                                 customdata=[[w.start, w.end] for _, w in over],
                                 hovertemplate="%{text}: %{y:.3f}<extra>over threshold</extra>"))
    if ens is not None and ens.p_fake is not None and ens.windows:
        xs, ys, spans = [], [], []
        for w in ens.windows:
            xs += [w.start, w.end]
            ys += [w.p_fake, w.p_fake]
            spans += [[w.start, w.end]] * 2
        fig.add_trace(go.Scatter(x=xs, y=ys, name=ENSEMBLE, mode="lines", customdata=spans,
                                 line=dict(width=3, color=ENSEMBLE_COLOUR),
                                 hovertemplate="ensemble %{customdata[0]:.1f}-%{customdata[1]:.1f} s: "
                                               "%{y:.3f}<extra></extra>"))
        # shapes in one go: add_vrect per span re-validates the layout each time (slow for long files)
        shapes += [dict(type="rect", xref="x", yref="paper", x0=a, x1=b, y0=0, y1=1, fillcolor=FAKE_COLOUR,
                        opacity=0.15, line_width=0, layer="below")
                   for a, b in over_threshold_spans(ens.windows, ens.threshold)]
        shapes.append(dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=ens.threshold,
                           y1=ens.threshold, line=dict(dash="dash", color=FAKE_COLOUR, width=1)))
        notes.append(dict(xref="paper", yref="y", x=0, y=ens.threshold, xanchor="left", yanchor="bottom",
                          text=f"ensemble threshold {ens.threshold:.3f}", showarrow=False,
                          font=dict(size=11, color=FAKE_COLOUR)))
    if selected is not None:
        shapes.append(dict(type="line", xref="x", yref="paper", x0=selected, x1=selected, y0=0, y1=1,
                           line=dict(color="#1f77b4", width=2)))
        notes.append(dict(xref="x", yref="paper", x=selected, y=0, xanchor="left", yanchor="bottom",
                          text="play from", showarrow=False, font=dict(size=11, color="#1f77b4")))
    fig.update_layout(shapes=shapes, annotations=notes)
    end = res.facts.duration_s if res.facts else None
    fig.update_xaxes(title="Time (s)", range=[0, end] if end else None)
    fig.update_yaxes(title=P_AXIS, range=[-0.02, 1.02])
    return _layout(fig, "P(fake) over time", height=380,
                   note="shaded: ensemble over threshold · click a point to play from it")


# -- many files -----------------------------------------------------------------------------


def histogram_figure(scores: pd.DataFrame, threshold: float | None = None) -> go.Figure:
    """Overlaid P(fake) histograms, one per model (columns) plus the ensemble."""
    fig = go.Figure()
    for i, c in enumerate(scores.columns):
        v = scores[c].dropna()
        fig.add_trace(go.Histogram(x=v, name=c, xbins=dict(start=0, end=1.0001, size=0.05), opacity=0.6,
                                   marker_color=colour_of(i, c)))
    if threshold is not None:
        fig.add_vline(x=threshold, line=dict(dash="dash", color=FAKE_COLOUR))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title=P_AXIS, range=[0, 1])
    fig.update_yaxes(title="files")
    return _layout(fig, "P(fake) per model", height=340)


def verdict_counts_figure(counts: dict[str, int]) -> go.Figure:
    colours = {"fake": FAKE_COLOUR, "real": REAL_COLOUR, "error": "#7f7f7f"}
    keys = list(counts)
    fig = go.Figure(go.Bar(x=keys, y=[counts[k] for k in keys], name="files",
                           marker_color=[colours.get(k, "#1f77b4") for k in keys],
                           text=[counts[k] for k in keys], textposition="auto"))
    fig.update_yaxes(title="files")
    return _layout(fig, "Ensemble verdicts", height=340)


def _file_axis(files: list[str]) -> dict:
    """Categorical ticks for file paths: the data keep the full path (in the hover), the ticks
    show the file name (with just enough of its folders to tell two apart)."""
    return dict(tickmode="array", tickvals=list(files), ticktext=short_labels(list(files)), automargin=True)


def grouped_bars_figure(scores: pd.DataFrame, threshold: float | None = None) -> go.Figure:
    """Per file, each model's P(fake) side by side; the legend sits above the plot, clear of the names."""
    fig = go.Figure()
    files = list(scores.index)
    for i, c in enumerate(scores.columns):
        fig.add_trace(go.Bar(x=files, y=scores[c], name=c, marker_color=colour_of(i, c),
                             hovertemplate="%{x}<br>" + c + ": %{y:.3f}<extra></extra>"))
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(dash="dash", color=FAKE_COLOUR))
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_xaxes(title="file", tickangle=-40 if len(files) > 4 else 0, **_file_axis(files))
    fig.update_yaxes(title=P_AXIS, range=[0, 1])
    _layout(fig, "P(fake) per file and model", height=480)
    # title pinned to the top edge, legend just above the plot: room for the legend to wrap on a phone
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"),
                      title=dict(y=0.99, yanchor="top", yref="container"), margin=dict(t=120))
    return fig


HEATMAP_ROW_PX = 22        # a row per file while the numbers are printed in the cells ...
HEATMAP_DENSE_ROW_PX = 13  # ... and still a readable label per row beyond that


def heatmap_height(n_files: int) -> int:
    """Tall enough for one labelled row per file (the page scrolls it when it gets long)."""
    return int(max(300, 110 + (HEATMAP_ROW_PX if n_files <= 60 else HEATMAP_DENSE_ROW_PX) * n_files))


def heatmap_figure(scores: pd.DataFrame) -> go.Figure:
    """Files x models P(fake), every file labelled by name (full path in the hover), models on top."""
    z = scores.to_numpy(dtype=float)
    small = len(scores) <= 60  # numbers in the cells only while they are readable
    files = list(scores.index)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(scores.columns), y=files, zmin=0, zmax=1, colorscale=colorscale("RdYlGn_r"),
        name="P(fake)", colorbar=dict(title=dict(text="P(fake)"), len=min(1.0, 600 / heatmap_height(len(files)))),
        text=[["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z] if small and z.size else None,
        texttemplate="%{text}" if small else None, hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=12 if small else 10), **_file_axis(files))
    fig.update_xaxes(side="top")
    _layout(fig, "Files x models: P(fake)", height=heatmap_height(len(files)))
    fig.update_layout(margin=dict(t=90, b=20))
    return fig


def matrix_figure(m: pd.DataFrame, title: str, zmin: float, zmax: float, fmt: str = "{:.2f}") -> go.Figure:
    z = m.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(m.columns), y=list(m.index), zmin=zmin, zmax=zmax, colorscale=colorscale("Blues"),
        name=title,
        text=[["" if np.isnan(v) else fmt.format(v) for v in row] for row in z], texttemplate="%{text}"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, height=360)


def roc_figure(curves: dict) -> go.Figure:
    """ROC curves on one plot; `curves` maps name -> (fpr, tpr, auc, eer)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="chance", mode="lines",
                             line=dict(dash="dot", color="#999999")))
    for i, (name, (fpr, tpr, auc, e)) in enumerate(curves.items()):
        inverse = ", ranks inversely" if auc < 0.5 else ""
        fig.add_trace(go.Scatter(x=fpr, y=tpr, name=f"{name} (AUC {auc:.3f}{inverse}, EER {e:.1%})", mode="lines",
                                 line=dict(color=colour_of(i, name), width=3 if name == ENSEMBLE else 2)))
    fig.update_xaxes(title="False positive rate (real called fake)", range=[0, 1])
    fig.update_yaxes(title="True positive rate (fake caught)", range=[0, 1])
    return _layout(fig, "ROC curves", height=420)


def confusion_figure(cm: np.ndarray, name: str) -> go.Figure:
    """One model's confusion matrix; the model's name is the (short) title, so it fits a narrow column."""
    fig = go.Figure(go.Heatmap(
        z=cm, x=["called real", "called fake"], y=["real", "fake"], colorscale=colorscale("Blues"),
        showscale=False, name=name, text=cm.astype(str), texttemplate="%{text}", textfont=dict(size=16)))
    fig.update_yaxes(autorange="reversed", title="true")
    _layout(fig, name, height=260, note="confusion at its threshold")
    fig.update_layout(margin=dict(l=55, r=10, t=60, b=35), title=dict(font=dict(size=15)))
    return fig
