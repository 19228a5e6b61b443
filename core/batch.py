"""Many files -> one CSV row each (facts, one p_fake column per model, ensemble, verdict, error).

The row layout is shared by the CLI's `batch`, the dashboard's download and the Ray engine,
so the same file gives the same row whichever path scored it.

`run_batch()` is the resumable, kill-safe batch job behind `python -m core batch`:

  * sources are folders (scanned recursively), audio files, file lists (`.txt`, one path per
    line, `#` comments) or manifest CSVs with a `path` column; relative paths in a list or a
    manifest are relative to that list's folder;
  * every row is appended as one complete line with a single `write()` followed by `fsync`,
    so a SIGTERM/SIGKILL (or a power cut) leaves at most one half-written last line;
  * on resume the half-written last line is cut off, files already in the CSV (scored or
    error rows) are skipped, and only the rest is scored: each file ends up exactly once;
  * a bad file becomes an error row and the batch goes on.

>>> from core.inference import Detector                      # doctest: +SKIP
>>> det = Detector.from_set("seed", models="lstm,darts")      # doctest: +SKIP
>>> run_batch(["clips/"], "results.csv", det)                 # doctest: +SKIP
BatchSummary(total=120, skipped=0, scored=118, errors=2, ...)
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from .errors import ConfigError
from .inference import FileResult
from .spoken import CHECK_FAILED

if TYPE_CHECKING:  # pragma: no cover
    from .inference import Detector

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".oga", ".wave", ".aif", ".aiff"}
FACT_COLUMNS = ["duration_s", "original_rate", "channels", "container", "codec", "peak_dbfs",
                "clipped_fraction", "silence_ratio", "bandwidth_hz"]


def csv_columns(model_names: Iterable[str]) -> list[str]:
    """The batch CSV's header: facts, each model's P(fake), the ensemble and its verdict, then each
    model's own verdict (at its own threshold), so a reader can see which models said fake."""
    names = list(model_names)
    return (_older_columns(names)[:-2] + list(ASSESSMENT_COLUMNS) + [f"verdict_{n}" for n in names]
            + list(SPOKEN_COLUMNS) + ["warnings", "error"])


ASSESSMENT_COLUMNS = ("assessment", "band_low", "band_high", "assessment_reasons")
SPOKEN_COLUMNS = ("language", "language_p", "no_speech_p")     # core/spoken.py; empty when not checked


def _older_columns(names: list[str]) -> list[str]:
    """The header written before the assessment and `verdict_<model>` columns existed: a CSV with
    it still resumes (in that layout)."""
    return (["file", "set"] + FACT_COLUMNS + [f"p_fake_{n}" for n in names]
            + ["p_fake_ensemble", "threshold_ensemble", "verdict", "warnings", "error"])


def result_to_row(res: FileResult, model_names: Iterable[str]) -> dict:
    """Flatten a FileResult into the CSV row; model errors go into `error`, the rest still score."""
    row = {c: "" for c in csv_columns(model_names)}
    row["file"], row["set"] = res.file, res.set_name
    if res.facts is not None:
        f = res.facts
        row.update(duration_s=round(f.duration_s, 3), original_rate=f.original_rate, channels=f.channels,
                   container=f.container, codec=f.codec,
                   peak_dbfs=round(f.peak_dbfs, 2) if f.peak_dbfs != float("-inf") else "-inf",
                   clipped_fraction=round(f.clipped_fraction, 6), silence_ratio=round(f.silence_ratio, 4),
                   bandwidth_hz=round(f.bandwidth_hz))
        # the same cautions the Analyze page shows (low rate, lossy, clipped, cut off, ...), one cell
        row["warnings"] = " | ".join(w.replace("\n", " ") for w in f.warnings())
    errors = [res.error] if res.error else []
    for n in model_names:
        m = res.models.get(n)
        if m is None:
            continue
        if m.p_fake is not None:
            row[f"p_fake_{n}"] = round(m.p_fake, 6)
            row[f"verdict_{n}"] = m.verdict or ""
        elif m.error:
            errors.append(f"{n}: {m.error}")
    if res.ensemble is not None and res.ensemble.p_fake is not None:
        row["p_fake_ensemble"] = round(res.ensemble.p_fake, 6)
        row["threshold_ensemble"] = round(res.ensemble.threshold, 6)
        row["verdict"] = res.ensemble.verdict
    if res.assessment is not None:
        a = res.assessment
        row.update(assessment=a.label, band_low=round(a.band.low, 6), band_high=round(a.band.high, 6),
                   assessment_reasons=" | ".join(a.reasons + a.cautions).replace("\n", " "))
    sp = res.spoken
    if sp is not None and sp.content is not None:
        row.update(language=sp.content.language, language_p=round(sp.content.language_p, 4),
                   no_speech_p=round(sp.content.no_speech_p, 4))
    elif sp is not None and sp.error:   # the score stands; the check's absence is a warning, not an error
        row["warnings"] = " | ".join(w for w in (row["warnings"], sp.error.replace("\n", " ")) if w)
    row["error"] = " | ".join(e.replace("\n", " ").replace("\r", " ") for e in errors)
    return row


def scan_audio(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Expand folders recursively into audio files (sorted, each once); files are kept as given.

    Symlink loops and unreadable folders are skipped rather than followed forever.
    """
    out: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=True, onerror=lambda e: None):
                try:
                    st = os.stat(root)
                except OSError:
                    dirs[:] = []
                    continue
                if (st.st_dev, st.st_ino) in seen_dirs:
                    dirs[:] = []
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                dirs.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in AUDIO_EXTENSIONS:
                        out.append(str(Path(root) / f))
        else:
            out.append(str(p))
    uniq = list(dict.fromkeys(out))
    return uniq


# ----------------------------------------------------------------------------- sources

LIST_SUFFIXES = {".txt", ".lst", ".list"}
MANIFEST_SUFFIXES = {".csv"}


def _read_file_list(path: Path) -> list[str]:
    """A `.txt` list: one path per line; blank lines and `#` comments ignored."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the file list ({e})") from None
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(_relative_to(path, line))
    return out


def _read_manifest(path: Path) -> list[str]:
    """A manifest CSV: the `path` column, relative to the CSV's folder."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            if "path" not in fields:
                raise ConfigError(f"{path}: a manifest CSV needs a 'path' column (it has: "
                                  f"{', '.join(fields) or 'no header'})")
            key = (reader.fieldnames or [])[fields.index("path")]
            return [_relative_to(path, row[key].strip()) for row in reader if (row.get(key) or "").strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{path}: cannot read the manifest ({e})") from None


def _relative_to(listing: Path, entry: str) -> str:
    entry = os.path.expanduser(entry)
    return entry if os.path.isabs(entry) else os.path.join(os.path.dirname(os.fspath(listing)), entry)


def expand_sources(sources: Iterable[str | os.PathLike]) -> list[str]:
    """Folders, audio files, file lists and manifests -> audio paths, each once, in order.

    A folder named in a list or a manifest is scanned too. A path that does not exist is
    kept: it becomes an error row, so a typo is reported rather than silently dropped.
    """
    out: list[str] = []
    for src in sources:
        p = Path(src)
        if p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
            out.extend(scan_audio(_read_file_list(p)))
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            out.extend(scan_audio(_read_manifest(p)))
        else:
            out.extend(scan_audio([p]))
    seen: set[str] = set()
    uniq = []
    for f in out:
        k = _key(f)
        if k not in seen:
            seen.add(k)
            uniq.append(f)
    return uniq


def _key(path: str) -> str:
    """How a file is recognised on resume: the normalised absolute path."""
    return os.path.normcase(os.path.abspath(path))


# ----------------------------------------------------------------------------- kill-safe CSV


def _row_bytes(row: dict, columns: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([row.get(c, "") for c in columns])
    return buf.getvalue().encode("utf-8")


def _write_all(fd: int, data: bytes, sync: bool) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    if sync:
        os.fsync(fd)


def repair_csv(path: str | os.PathLike) -> int:
    """Cut a half-written last line (a file not ending in a newline). Returns bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # scan back for the last newline, a block at a time
        pos, keep = size, 0
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = pos + i + 1
                break
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def _read_header(path: Path) -> list[str] | None:
    """The first row of an existing, non-empty CSV (None when there is none)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), None)


def _records(path: Path, header: list[str]) -> Iterable[list[str]]:
    """The data rows of an output CSV that hold every column of `header` (a row cut short by a
    crash cannot be one: `repair_csv` has run; never fatal either way)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)
        yield from (rec for rec in reader if len(rec) == len(header))


def _without_verdicts(columns: list[str]) -> list[str]:
    """`columns` in the oldest layout: without the per-model verdicts, the assessment and the spoken check."""
    return [c for c in columns if not c.startswith("verdict_") and c not in ASSESSMENT_COLUMNS
            and c not in SPOKEN_COLUMNS]


def _earlier_layouts(columns: list[str]) -> list[list[str]]:
    """The layouts earlier versions wrote for the same models, newest first: without the spoken
    check's columns; without those, the per-model verdicts and the assessment."""
    return [[c for c in columns if c not in SPOKEN_COLUMNS], _without_verdicts(columns)]


def resume_columns(path: str | os.PathLike, columns: list[str]) -> list[str]:
    """The layout to append rows in when resuming `path`: `columns`, or, for a CSV an earlier
    version wrote (same models otherwise), that earlier layout, so the file stays one consistent
    table. Its new rows then lack the newer columns (BatchSummary says so)."""
    header = _read_header(Path(path))
    for older in _earlier_layouts(columns):
        if older != columns and header == older:
            return older
    return columns


def read_done(path: str | os.PathLike, columns: list[str]) -> dict[str, bool]:
    """Files already in an output CSV -> whether that row has a score (vs an error row).

    The header must match `columns` (the same model selection; a CSV from before the
    `verdict_<model>` columns is accepted too, see `resume_columns`), else resuming would mix
    layouts: that is refused with what to do instead.
    """
    path = Path(path)
    done: dict[str, bool] = {}
    header = _read_header(path)
    if header is None:
        return done
    if header != columns and header not in _earlier_layouts(columns):
        only_there = [c for c in header if c not in columns] or ["none"]
        only_here = [c for c in columns if c not in header] or ["none"]
        raise ConfigError(
            f"{path}: exists with other columns than this run (only in the file: {', '.join(only_there)}; "
            f"only in this run: {', '.join(only_here)}); use the same --set/--models to resume it, "
            "another --out, or --no-resume to overwrite it (a CSV from an older version cannot be resumed)")
    i_file, i_ens = header.index("file"), header.index("p_fake_ensemble")
    for rec in _records(path, header):
        done[_key(rec[i_file])] = bool(rec[i_ens].strip())
    return done


class _Lock:
    """An exclusive advisory lock on the output, so two batch jobs cannot interleave rows."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX: no locking
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise ConfigError(f"{self.path}: another batch job is writing this file; wait for it "
                              "or choose another --out") from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock


# ----------------------------------------------------------------------------- the batch job


@dataclass
class BatchSummary:
    """What a batch run did. `scored`/`errors` count this run's rows; `skipped` were already there."""

    out_csv: str
    total: int = 0               # files named by the sources
    skipped: int = 0             # already in the CSV (resume)
    scored: int = 0              # rows with an ensemble score written by this run
    errors: int = 0              # error rows written by this run (bad file, or every model failed)
    model_errors: int = 0        # scored rows in which at least one model failed
    previously_scored: int = 0   # skipped rows that carry a score
    repaired_bytes: int = 0      # size of the half-written last line cut off on resume
    seconds: float = 0.0
    interrupted: bool = False
    older_layout: bool = False   # resumed a CSV from before the verdict_<model> columns (kept its layout)
    audio_s: float = 0.0         # seconds of audio scored by this run
    error_examples: list[str] = field(default_factory=list)

    def count(self, row: dict, audio_s: float) -> None:
        """Account for one written row (a score, or an error row)."""
        if row["p_fake_ensemble"] == "":
            self.errors += 1
            if len(self.error_examples) < 5:
                self.error_examples.append(row["error"] or f"{row['file']}: no score")
        else:
            self.scored += 1
            self.model_errors += bool(row["error"])
            self.audio_s += audio_s

    @property
    def any_scored(self) -> bool:
        """False only when nothing in the output has a score (the CLI then exits non-zero)."""
        return self.scored + self.previously_scored > 0

    @property
    def files_per_s(self) -> float:
        return (self.scored + self.errors) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(any_scored=self.any_scored, files_per_s=self.files_per_s)
        return d

    def text(self) -> str:
        lines = [f"{self.out_csv}: {self.scored} scored, {self.errors} error rows"
                 + (f", {self.skipped} already there (skipped)" if self.skipped else "")
                 + f" of {self.total} files in {self.seconds:.1f} s"
                 + (f" ({self.files_per_s:.1f} files/s)" if self.scored + self.errors else "")]
        if self.model_errors:
            lines.append(f"{self.model_errors} rows have a model that failed (see the error column)")
        if self.older_layout:
            lines.append("resumed a CSV written by an earlier version: its rows keep that layout (without "
                         "the newer columns: assessment, verdict_<model> or the language check's); use "
                         "--no-resume or another --out to get them")
        if self.repaired_bytes:
            lines.append(f"cut a half-written last line ({self.repaired_bytes} bytes) left by an interrupted run")
        for e in self.error_examples:
            lines.append(f"  error: {e}")
        if self.errors > len(self.error_examples):
            lines.append(f"  ... and {self.errors - len(self.error_examples)} more (see the error column)")
        if self.interrupted:
            lines.append("interrupted: rerun the same command to finish (scored files are kept)")
        return "\n".join(lines)


def refuse_other_speech_check(path: str | os.PathLike, spoken_check: bool) -> None:
    """Resuming a CSV scored with the language and speech check off, with it on (or the other way
    round), would leave half its rows without the check's columns: refused, with what to do.
    A row scored with the check on has `no_speech_p`, or a warning that the check could not run."""
    path = Path(path)
    header = _read_header(path)
    if not header or "no_speech_p" not in header:
        return   # an earlier layout without the check's columns: resume_columns keeps that layout
    i_ens, i_ns, i_warn = header.index("p_fake_ensemble"), header.index("no_speech_p"), header.index("warnings")
    scored = checked = 0
    for rec in _records(path, header):
        if rec[i_ens].strip():
            scored += 1
            checked += bool(rec[i_ns].strip()) or CHECK_FAILED in rec[i_warn]
    if not scored or (spoken_check and checked) or (not spoken_check and not checked):
        return
    was, flag = ("off", "--no-speech-check") if spoken_check else ("on", "the speech check on (drop --no-speech-check)")
    raise ConfigError(f"{path}: its {scored} scored rows were written with the language and speech check {was}; "
                      f"resume it with {flag}, or use another --out or --no-resume, so the table stays one layout")


def plan_resume(out: Path, files: list[str], columns: list[str], resume: bool, summary: BatchSummary,
                spoken_check: bool | None = None) -> list[str]:
    """The files still to score. With `resume`, repairs a half-written last line first and skips
    files already in `out`; counts both in `summary`. `spoken_check` (this run's setting) is
    checked against the rows already there. Call it holding the output's lock."""
    done: dict = {}
    if resume:
        summary.repaired_bytes = repair_csv(out)
        done = read_done(out, columns)
        if spoken_check is not None:
            refuse_other_speech_check(out, spoken_check)
    todo = [f for f in files if _key(f) not in done]
    summary.skipped = len(files) - len(todo)
    summary.previously_scored = sum(1 for f in files if done.get(_key(f)))
    return todo


def run_batch(sources: Iterable[str | os.PathLike], out_csv: str | os.PathLike, detector: "Detector",
              progress: Callable[[int, int], None] | None = None, resume: bool = True,
              fsync: bool = True, on_start: Callable[[BatchSummary, int], None] | None = None) -> BatchSummary:
    """Score every audio file named by `sources` into `out_csv`, one row per file.

    `resume=True` keeps an existing `out_csv` and scores only files not in it; `resume=False`
    starts the file afresh. `progress(done, todo)` is called after each row with the count
    of files written by this run. `on_start(summary, todo)` is called once the work is known.
    Stops cleanly (summary.interrupted) on KeyboardInterrupt; the rows written stay valid.
    """
    t0 = time.monotonic()
    out = Path(out_csv)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; --out needs a CSV file name")
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    names = [m.name for m in detector.models]
    columns = csv_columns(names)
    summary = BatchSummary(str(out))
    files = expand_sources(sources)
    summary.total = len(files)
    with _Lock(out):
        todo = plan_resume(out, files, columns, resume, summary, spoken_check=detector.spoken_check)
        columns = resume_columns(out, columns) if resume else columns
        summary.older_layout = columns != csv_columns(names)
        if not resume:
            os.truncate(out, 0)
        if on_start:
            on_start(summary, len(todo))
        fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size == 0:
                _write_all(fd, _row_bytes({c: c for c in columns}, columns), fsync)
            written = 0
            try:
                for res in detector.score_many([(f, f) for f in todo]):
                    row = result_to_row(res, names)
                    _write_all(fd, _row_bytes(row, columns), fsync)
                    written += 1
                    summary.count(row, res.facts.duration_s if res.facts is not None else 0.0)
                    if progress:
                        progress(written, len(todo))
            except KeyboardInterrupt:
                summary.interrupted = True
        finally:
            os.close(fd)
        if summary.interrupted:  # the interrupt may land between a row's write and its count: recount
            now = read_done(out, columns)
            new_rows = [now[_key(f)] for f in todo if _key(f) in now]
            summary.scored, summary.errors = sum(new_rows), len(new_rows) - sum(new_rows)
    summary.seconds = time.monotonic() - t0
    return summary


def read_results(path: str | os.PathLike):
    """An output CSV as a pandas DataFrame (for notebooks and the dashboard)."""
    import pandas as pd

    data = Path(path).read_bytes()
    if data and not data.endswith(b"\n"):  # a run is writing it, or was killed: ignore the partial row
        data = data[: data.rfind(b"\n") + 1]
    return pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""])
