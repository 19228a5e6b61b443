"""Results -> tables: thresholds, per-model rows, the batch CSV, score and verdict matrices,
agreement between models, labels, and label-based metrics. No streamlit here.

The batch table is built with `core.batch.result_to_row` and `core.batch.csv_columns`, so
the dashboard's CSV has the same columns (and values) as `python -m core batch`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import replace
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from core import metrics
from core.batch import csv_columns, result_to_row
from core.spoken import spoken_rows
from core.assessment import INCONCLUSIVE, assess
from core.inference import FileResult, ModelScore, verdict

ENSEMBLE = "ensemble"


# -- thresholds -----------------------------------------------------------------------------


def _rethreshold(m: ModelScore, thr: float, source: str) -> ModelScore:
    if m.p_fake is None:
        return replace(m, threshold=thr, threshold_source=source)
    ps = np.array([w.p_fake for w in m.windows], dtype=float)
    frac = float((ps >= thr).mean()) if len(ps) else m.frac_windows_over
    return replace(m, threshold=thr, threshold_source=source, verdict=verdict(m.p_fake, thr),
                   frac_windows_over=frac)


def apply_threshold(res: FileResult, threshold: float | None, source: str = "custom value") -> FileResult:
    """The same result judged at one custom threshold (every model and the ensemble).

    `threshold=None` returns the result unchanged: each model keeps its card's threshold.
    """
    if threshold is None or res.error:
        return res
    models = {n: _rethreshold(m, threshold, source) for n, m in res.models.items()}
    ens = _rethreshold(res.ensemble, threshold, source) if res.ensemble is not None else None
    a = res.assessment
    if a is not None:   # the same band and rules, judged at the custom threshold
        weighted = [r for r in a.reasons if "disagree" in r]
        a = assess(a.p_fake, threshold, source, a.band, None, None, a.cautions)
        a.reasons += weighted
        if weighted:
            a.label = INCONCLUSIVE
    return replace(res, models=models, ensemble=ens, assessment=a)


# -- one file -------------------------------------------------------------------------------


def fmt_p(p: float | None) -> str:
    """How a probability is printed everywhere on the dashboard."""
    return "n/a" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3f}"


def verdict_word(v: str | None) -> str:
    return {"fake": "Likely fake", "real": "Likely real"}.get(v or "", "No verdict")


def assessment_word(res: FileResult) -> str:
    """The three-way assessment as the page heads its verdict box."""
    return res.assessment.label.capitalize() if res.assessment else verdict_word(res.ensemble.verdict)


def model_table(res: FileResult, families: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per model plus the ensemble: P(fake), its threshold and source, the verdict."""
    rows = []
    for m in [*res.models.values(), *([res.ensemble] if res.ensemble else [])]:
        rows.append({
            "model": m.name,
            "family": (families or {}).get(m.name, m.source if m.name == ENSEMBLE else ""),
            "P(fake)": m.p_fake,
            "verdict": m.verdict or "error",
            "threshold": m.threshold,
            "threshold source": m.threshold_source,
            "max window P(fake)": m.max_p_fake,
            "windows over threshold": m.frac_windows_over,
            "weights": m.source,
            "error": m.error or "",
        })
    return pd.DataFrame(rows)


def facts_rows(res: FileResult) -> list[tuple[str, str]]:
    f = res.facts
    if f is None:
        return []
    return [
        ("Format", f"{f.container} / {f.codec}" + (" (lossy)" if f.lossy else "")),
        ("Original sample rate", f"{f.original_rate} Hz"),
        ("Channels", str(f.channels)),
        ("Duration", f"{f.duration_s:.2f} s"),
        ("Analysed", f"{f.analysed_s:.2f} s"),
        ("Peak level", f"{f.peak_dbfs:.1f} dBFS" if np.isfinite(f.peak_dbfs) else "silent"),
        ("Clipped samples", f"{f.clipped_fraction:.3%}"),
        ("Silence", f"{f.silence_ratio:.0%} of 20 ms frames"),
        ("Bandwidth", f"content up to {f.bandwidth_hz / 1000:.1f} kHz (at 16 kHz)" if f.bandwidth_hz else "silent"),
        ("DC offset", f"{f.dc_offset:+.4f}"),
        ("Decoder", f.decoder),
    ] + spoken_rows(res.spoken)


def window_choices(res: FileResult, limit: int = 120) -> list[tuple[float, float, float, bool]]:
    """(start, end, P(fake), over threshold) of the ensemble timeline's cells to offer as play
    positions, most suspicious first (ties in time order), at most `limit` of them: the moment
    a listener wants is at the top of the list, not somewhere down a timeline."""
    ens = res.ensemble
    if ens is None or ens.p_fake is None:
        return []
    cells = [(w.start, w.end, w.p_fake, w.p_fake >= ens.threshold) for w in ens.windows]
    return sorted(cells, key=lambda c: (-c[2], c[0]))[:limit]


def start_from_selection(points: list[dict]) -> float | None:
    """The play position a click on the timeline asks for: the start of the clicked point's
    window (its customdata), else its time; None when nothing usable was clicked."""
    for pt in points or []:
        data = pt.get("customdata")
        if isinstance(data, (list, tuple)) and data and _finite(data[0]):
            return max(0.0, float(data[0]))
        if _finite(pt.get("x")):
            return max(0.0, float(pt["x"]))
    return None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def suspicious_window(m: ModelScore) -> tuple[float, float] | None:
    """(start, end) of the model's highest-P(fake) window (the first of equals), or None."""
    if m.p_fake is None or not m.windows:
        return None
    w = max(m.windows, key=lambda w: (w.p_fake, -w.start))
    return w.start, w.end


def over_threshold_spans(windows, threshold: float) -> list[tuple[float, float]]:
    """Merge consecutive windows whose P(fake) >= threshold into (start, end) spans."""
    spans: list[list[float]] = []
    for w in sorted(windows, key=lambda w: w.start):
        if w.p_fake < threshold:
            continue
        if spans and w.start <= spans[-1][1] + 1e-9:
            spans[-1][1] = max(spans[-1][1], w.end)
        else:
            spans.append([w.start, w.end])
    return [(a, b) for a, b in spans]


# -- many files -----------------------------------------------------------------------------


def batch_rows(results: list[FileResult], model_names: list[str]) -> list[dict]:
    return [result_to_row(r, model_names) for r in results]


_INT_COLUMNS = ("original_rate", "channels")
_FLOAT_COLUMNS = ("threshold_ensemble", "duration_s", "clipped_fraction", "silence_ratio", "peak_dbfs")


def batch_frame(results: list[FileResult], model_names: list[str]) -> pd.DataFrame:
    """The CLI's batch table: one row per file, one column per model, ensemble, verdict, error."""
    cols = csv_columns(model_names)
    df = pd.DataFrame(batch_rows(results, model_names), columns=cols)
    for c in cols:  # typed columns sort as numbers; an error row's blanks become missing values
        if c in _INT_COLUMNS:
            df[c] = pd.to_numeric(df[c].replace("", None), errors="coerce").astype("Int64")
        elif c.startswith("p_fake_") or c in _FLOAT_COLUMNS:
            df[c] = pd.to_numeric(df[c].replace("", None), errors="coerce").astype(float)
    return df


def short_labels(paths: list[str]) -> list[str]:
    """Each path's file name, with as many parent folders as it takes to tell equal names apart:
    what a table or an axis shows of a long path (its start is the least telling part)."""
    parts = [PurePosixPath(str(p).replace("\\", "/")).parts or (str(p),) for p in paths]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(pp[-d:]) for pp, d in zip(parts, depth)]
        seen: dict[str, list[int]] = {}
        for i, lab in enumerate(labels):
            seen.setdefault(lab, []).append(i)
        grow = [i for group in seen.values() if len(group) > 1 for i in group if depth[i] < len(parts[i])]
        if not grow:
            return labels
        for i in grow:
            depth[i] += 1


def with_names(df: pd.DataFrame) -> pd.DataFrame:
    """The batch table with a `name` column (the file name) in front: the full path stays in `file`."""
    return df.assign(name=short_labels(list(df["file"]))) if len(df) else df.assign(name=pd.Series(dtype=str))


def display_order(columns: list[str]) -> list[str]:
    """The batch table on screen: the file's name, verdicts and scores first, then the error, the
    warnings, the full path and the facts."""
    first = ["name", "verdict", "p_fake_ensemble"] + [c for c in columns if c.startswith("p_fake_")
                                                     and c != "p_fake_ensemble"]
    first += [c for c in columns if c.startswith("verdict_")]
    first += ["threshold_ensemble", "error", "warnings", "file"]
    return [c for c in first if c in columns] + [c for c in columns if c not in first]


def csv_bytes(results: list[FileResult], model_names: list[str]) -> bytes:
    """The batch CSV exactly as the CLI writes it (csv module, `\\n` line ends, same columns)."""
    cols = csv_columns(model_names)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in batch_rows(results, model_names):
        w.writerow([row.get(c, "") for c in cols])
    return buf.getvalue().encode("utf-8")


def verdict_counts(results: list[FileResult]) -> dict[str, int]:
    out = {"fake": 0, "real": 0, "error": 0}
    for r in results:
        v = r.ensemble.verdict if (r.ensemble is not None and not r.error) else None
        out[v if v in ("fake", "real") else "error"] += 1
    return out


def score_matrix(results: list[FileResult], model_names: list[str], ensemble: bool = True) -> pd.DataFrame:
    """files x models P(fake) (NaN where a model failed); files with a file error are left out."""
    data, index = [], []
    for r in results:
        if r.error:
            continue
        row = {n: (r.models[n].p_fake if n in r.models else None) for n in model_names}
        if ensemble:
            row[ENSEMBLE] = r.ensemble.p_fake if r.ensemble is not None else None
        data.append(row)
        index.append(r.file)
    cols = list(model_names) + ([ENSEMBLE] if ensemble else [])
    return pd.DataFrame(data, index=pd.Index(index, name="file"), columns=cols, dtype=float)


def verdict_matrix(results: list[FileResult], model_names: list[str], ensemble: bool = False) -> pd.DataFrame:
    """files x models verdicts as 1 = fake, 0 = real (NaN where a model failed)."""
    data, index = [], []
    for r in results:
        if r.error:
            continue
        ms = [r.models.get(n) for n in model_names] + ([r.ensemble] if ensemble else [])
        data.append([np.nan if (m is None or m.verdict is None) else float(m.verdict == "fake") for m in ms])
        index.append(r.file)
    cols = list(model_names) + ([ENSEMBLE] if ensemble else [])
    return pd.DataFrame(data, index=pd.Index(index, name="file"), columns=cols, dtype=float)


def agreement(verdicts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, float, int]:
    """Pairwise percent agreement and Cohen's kappa, Fleiss' kappa over all models, files used.

    Only files every model scored take part (Fleiss needs every file rated by all).
    """
    v = verdicts.dropna()
    names = list(v.columns)
    pct = pd.DataFrame(np.nan, index=names, columns=names)
    kap = pd.DataFrame(np.nan, index=names, columns=names)
    for a in names:
        for b in names:
            if len(v):
                pct.loc[a, b] = metrics.percent_agreement(v[a].to_numpy(), v[b].to_numpy())
                kap.loc[a, b] = metrics.cohen_kappa(v[a].to_numpy(), v[b].to_numpy())
    fleiss = metrics.fleiss_kappa(v.to_numpy().astype(int)) if len(v) and len(names) >= 2 else float("nan")
    return pct, kap, fleiss, len(v)


def split_files(verdicts: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Files on which the models do not all give the same verdict, most divided first."""
    v = verdicts.dropna(how="all")
    n_fake = v.sum(axis=1)
    n = v.notna().sum(axis=1)
    split = v[(n_fake > 0) & (n_fake < n)]
    if split.empty:
        return pd.DataFrame(columns=["file", "models saying fake", "models saying real"])
    out = pd.DataFrame({
        "file": split.index,
        "models saying fake": [", ".join(c for c in v.columns if split.loc[f, c] == 1) for f in split.index],
        "models saying real": [", ".join(c for c in v.columns if split.loc[f, c] == 0) for f in split.index],
        "fake votes": n_fake[split.index].astype(int).to_numpy(),
        "of": n[split.index].astype(int).to_numpy(),
    })
    for c in scores.columns:
        out[f"P(fake) {c}"] = scores.loc[split.index, c].to_numpy()
    balance = (out["fake votes"] / out["of"] - 0.5).abs()
    return out.assign(_b=balance.to_numpy()).sort_values(["_b", "file"]).drop(columns="_b").reset_index(drop=True)


# -- labels ---------------------------------------------------------------------------------

_FOLDER_LABELS = {"real": 0, "bona-fide": 0, "bonafide": 0, "bona_fide": 0, "genuine": 0,
                  "fake": 1, "spoof": 1, "deepfake": 1, "synthetic": 1}


def label_from_path(path: str) -> int | None:
    """1 for a file under a `fake/` (or `spoof/`) folder, 0 under `real/` (or `bona-fide/`), else None.

    The folder nearest the file wins, so `real/tts/fake/x.wav` is fake.
    """
    parts = PurePosixPath(str(path).replace("\\", "/")).parts[:-1]
    for part in reversed(parts):
        lab = _FOLDER_LABELS.get(part.lower())
        if lab is not None:
            return lab
    return None


def labels_from_paths(files: list[str]) -> dict[str, int]:
    out = {}
    for f in files:
        lab = label_from_path(f)
        if lab is not None:
            out[f] = lab
    return out


def _norm(p: str) -> str:
    p = str(p).strip().replace("\\", "/")
    p = re.sub(r"/+", "/", p)
    return p[2:] if p.startswith("./") else p


def default_fake_values(values) -> list[str]:
    """Label values that mean fake by the usual names (the user can change the choice)."""
    fake = {"fake", "spoof", "1", "synthetic", "deepfake", "true", "yes"}
    return [v for v in values if str(v).strip().lower() in fake]


def match_table(table: pd.DataFrame, path_col: str, files: list[str],
                same=None) -> tuple[dict[str, int], list[str]]:
    """Which row of a table (any CSV with a path column) describes each scored file.

    A row matches a file when the paths are equal, when one ends with the other at a folder
    boundary (several such rows count when `same(row)` agrees on them: they say the same), or
    else by file name when that name is unique on both sides. Returns ({file: row position},
    files left unmatched).
    """
    rows = [(i, _norm(p)) for i, p in enumerate(table[path_col].astype(str)) if str(p).strip()]
    exact = {p: i for i, p in rows}
    by_name: dict[str, list[int]] = {}
    for i, p in rows:
        by_name.setdefault(PurePosixPath(p).name, []).append(i)
    file_names: dict[str, int] = {}
    for f in files:
        nm = PurePosixPath(_norm(f)).name
        file_names[nm] = file_names.get(nm, 0) + 1
    out, missing = {}, []
    for f in files:
        nf = _norm(f)
        if nf in exact:
            out[f] = exact[nf]
            continue
        hit = [i for i, p in rows if nf.endswith("/" + p) or p.endswith("/" + nf)]
        if len(hit) == 1 or (hit and same is not None and len({same(i) for i in hit}) == 1):
            out[f] = hit[0]
            continue
        nm = PurePosixPath(nf).name
        cands = by_name.get(nm, [])
        if len(cands) == 1 and file_names[nm] == 1:
            out[f] = cands[0]
        else:
            missing.append(f)
    return out, missing


def labels_from_table(table: pd.DataFrame, path_col: str, label_col: str, fake_values: list,
                      files: list[str]) -> tuple[dict[str, int], list[str]]:
    """Map a labels table onto scored files (rows matched as `match_table` says; a row without a
    label labels nothing). Returns ({file: 1 fake / 0 real}, files left unlabelled)."""
    fake_set = {str(v) for v in fake_values}
    labelled = table[[str(v).strip() not in ("", "nan") for v in table[label_col].astype(str)]]
    values = labelled[label_col].astype(str).tolist()
    is_fake = [v in fake_set for v in values]
    matched, missing = match_table(labelled.reset_index(drop=True), path_col, files, same=is_fake.__getitem__)
    return {f: int(is_fake[i]) for f, i in matched.items()}, missing


GROUP_COLUMNS = ("source_repo", "generator", "attack_type")   # manifest columns worth a breakdown


def groups_from_table(table: pd.DataFrame, path_col: str, files: list[str]) -> dict[str, dict[str, str]]:
    """{group column: {file: value}} for each of GROUP_COLUMNS the table has (blank values left out)."""
    cols = [c for c in GROUP_COLUMNS if c in table.columns]
    rows = table[cols].astype(str).to_numpy().tolist()
    matched, _ = match_table(table, path_col, files, same=lambda i: tuple(rows[i]))
    out = {}
    for col in GROUP_COLUMNS:
        if col in table.columns:
            values = table[col].astype(str).tolist()
            out[col] = {f: values[i].strip() for f, i in matched.items() if values[i].strip()}
    return {c: g for c, g in out.items() if g}


# -- metrics against labels -----------------------------------------------------------------


def label_metrics(scores: pd.DataFrame, verdicts: pd.DataFrame, labels: dict[str, int]) -> dict:
    """Each column's EER (and its threshold), AUC, ROC curve and confusion at its own threshold.

    `scores` and `verdicts` are files x models (with the ensemble as a column); only labelled
    files a model scored count for that model.
    """
    summary, curves, confusions = [], {}, {}
    for name in scores.columns:
        s = scores[name]
        files = [f for f in s.index if f in labels and not np.isnan(s[f])]
        y = np.array([labels[f] for f in files], dtype=int)
        p = s[files].to_numpy(dtype=float)
        row = {"model": name, "files": len(files), "fake": int(y.sum()), "real": int(len(y) - y.sum())}
        if len(files) and y.min() != y.max():
            e, t = metrics.eer(y, p)
            fpr, tpr, _ = metrics.roc_curve(y, p)
            auc = metrics.roc_auc(y, p)
            curves[name] = (fpr, tpr, auc, e)
            row.update({"EER": e, "EER threshold": t, "AUC": auc, "note": auc_note(auc)})
        else:
            row.update({"EER": np.nan, "EER threshold": np.nan, "AUC": np.nan, "note": "needs real and fake files"})
        if name in verdicts.columns and len(files):
            v = verdicts.loc[files, name]
            ok = v.notna().to_numpy()
            cm = metrics.confusion(y[ok], v.to_numpy()[ok].astype(int))
            confusions[name] = cm
            row["accuracy at threshold"] = float(np.trace(cm) / cm.sum()) if cm.sum() else np.nan
        summary.append(row)
    return {"summary": pd.DataFrame(summary), "roc": curves, "confusion": confusions}


def auc_note(auc: float) -> str:
    """What an AUC says beyond its value: below 0.5 the model scores real files higher than fakes."""
    if not np.isfinite(auc):
        return ""
    if auc < 0.5:
        return "ranks inversely on this data (real files score higher than fakes)"
    return "near chance" if auc < 0.6 else ""


GROUP_METRICS = ("EER", "AUC", "accuracy at threshold")


def _group_value(metric: str, y: np.ndarray, p: np.ndarray, v: np.ndarray) -> float:
    if metric == "accuracy at threshold":
        ok = ~np.isnan(v)
        return float((v[ok] == y[ok]).mean()) if ok.any() else np.nan
    if y.min() == y.max():
        return np.nan
    return metrics.eer(y, p)[0] if metric == "EER" else metrics.roc_auc(y, p)


def group_metrics(scores: pd.DataFrame, verdicts: pd.DataFrame, labels: dict[str, int],
                  groups: dict[str, str], metric: str = "EER") -> pd.DataFrame:
    """One row per group (a source, a generator), one column per model: `metric` on that group.

    Accuracy is on the group's own files. EER and AUC need both classes: a group with only
    fakes (a generator) is ranked against every labelled real file, one with only real files
    against every fake, so each generator gets the EER a detector has on it; `compared with`
    says which.
    """
    files = [f for f in scores.index if f in labels and f in groups]
    reals = [f for f in scores.index if labels.get(f) == 0]
    fakes = [f for f in scores.index if labels.get(f) == 1]
    rows = []
    for g in sorted({groups[f] for f in files}):
        own = [f for f in files if groups[f] == g]
        n_fake = sum(labels[f] for f in own)
        pool = own
        vs = "its own files"
        if metric != "accuracy at threshold" and n_fake in (0, len(own)):
            other = reals if n_fake else fakes
            pool, vs = own + [f for f in other if f not in own], ("all real files" if n_fake else "all fake files")
        row = {"group": g, "files": len(own), "fake": n_fake, "real": len(own) - n_fake, "compared with": vs}
        for name in scores.columns:
            s = scores.loc[pool, name]
            keep = s.notna().to_numpy()
            y = np.array([labels[f] for f in pool])[keep]
            v = (verdicts.loc[pool, name].to_numpy(dtype=float)[keep] if name in verdicts.columns
                 else np.full(keep.sum(), np.nan))
            if metric == "accuracy at threshold":   # accuracy only on the group's own files
                mine = np.array([f in own for f in pool])[keep]
                y, v = y[mine], v[mine]
            row[name] = _group_value(metric, y, s.to_numpy(dtype=float)[keep], v) if len(y) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
