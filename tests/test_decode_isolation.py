"""A crashing or hanging decoder costs one file, never the process or the batch.

Faults are injected into the decoder child by tests/decode_faults.py (named by
DEEPFAKE_DECODE_TEST_HOOK) for files whose name carries a marker; the timeouts are small so
the hangs end quickly.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FAST_MODELS, SR, python_env, speechlike
from core import decode_pool, decode_protocol as wire
from core.audio import AudioFacts, AudioReader, load_audio
from core.decode_limits import DecodeLimits
from core.decoding import IsolatedReader, open_audio
from core.errors import AudioError

HOOK = {"DEEPFAKE_DECODE_TEST_HOOK": "tests.decode_faults", "DEEPFAKE_DECODE_TIMEOUT_S": "3",
        "DEEPFAKE_DECODE_CPU_S": "2", "DEEPFAKE_DECODE_MEMORY_MB": "512"}
CRASHED = "the decoder crashed on this file"
TIMED_OUT = "decoding took longer than 3 s"


@pytest.fixture(scope="module")
def faults():
    """The fault hook and small limits for this module; the hooked children are stopped after it."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in HOOK.items():
            mp.setenv(k, v)
        yield
        decode_pool.shutdown()


def pool():
    return decode_pool.shared_pool(DecodeLimits.from_env())


def test_decoding_in_the_child_equals_decoding_in_process(faults, make):
    p = make.write("stereo44.wav", np.stack([speechlike(2.0, 44_100), speechlike(2.0, 44_100, 1)], 1), 44_100)
    ref = load_audio(p)
    for source in (p, p.read_bytes()):
        with open_audio(source, name="x.wav") as r:
            assert isinstance(r, IsolatedReader) and r.facts.original_rate == 44_100 and r.facts.channels == 2
            got = np.concatenate(list(r.blocks(block_s=0.5)))
        assert np.array_equal(got, ref.samples)
        assert r.facts.duration_s == ref.facts.duration_s and r.facts.peak_dbfs == ref.facts.peak_dbfs
        assert r.facts.name == "x.wav"


def test_native_rate_blocks_come_through_the_child_as_in_process(faults, make):
    """The Analyze page draws the spectrogram at the file's own rate from the same decode."""
    p = make.write("n48.wav", speechlike(1.5, 48_000), 48_000)
    want: list = []
    with AudioReader(p) as r:
        ref = np.concatenate(list(r.blocks(block_s=0.5, native=want.append)))
    got: list = []
    with open_audio(p) as r:
        assert r.original_rate == 48_000
        out = np.concatenate(list(r.blocks(block_s=0.5, native=got.append)))
    assert np.array_equal(out, ref) and np.array_equal(np.concatenate(got), np.concatenate(want))
    assert len(np.concatenate(got)) == round(1.5 * 48_000)


def test_segfault_and_hang_cost_one_file_each(faults, det, make):
    good = make.write("good.wav", speechlike(3.0), SR)
    segv = make.write("crash-segv.wav", speechlike(3.0), SR)
    hang = make.write("crash-hang.wav", speechlike(3.0), SR)
    names = ["good", "crash-segv", "good2", "crash-hang", "upload"]   # the markers go by the file's name
    out = list(det.score_many(zip(names, [good, segv, good, hang, good.read_bytes()])))
    assert [r.file for r in out] == names
    assert out[1].error.startswith(f"crash-segv: {CRASHED} (killed by SIGSEGV)"), out[1].error
    assert out[3].error.startswith(f"crash-hang: {TIMED_OUT}"), out[3].error
    for r in (out[1], out[3]):
        assert r.models == {} and r.ensemble is None and "\n" not in r.error
    scored = [out[0], out[2], out[4]]
    assert all(r.error is None and r.ensemble.p_fake is not None for r in scored)
    assert max(r.ensemble.p_fake for r in scored) == pytest.approx(min(r.ensemble.p_fake for r in scored), abs=1e-6)
    with pytest.raises(AudioError, match=CRASHED):
        det.score(segv.read_bytes(), name="upload crash-segv.wav")


def test_cpu_and_memory_caps_cost_one_file(faults, make):
    spin = make.write("crash-spin.wav", speechlike(1.0), SR)
    balloon = make.write("crash-balloon.wav", speechlike(1.0), SR)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPFAKE_DECODE_TIMEOUT_S", "30")   # the CPU cap (2 s) must act first
        with pytest.raises(AudioError, match="decoding used more than 2 s of CPU time"):
            open_audio(spin)
    with pytest.raises(AudioError, match="decoding needed more than 512 MB of memory"):
        open_audio(balloon)


def test_a_child_killed_mid_stream_is_that_files_error_and_is_replaced(faults, make):
    p = make.write("long.wav", speechlike(4.0), SR)
    before = pool().pids()
    r = open_audio(p)
    blocks = r.blocks(block_s=0.5)
    next(blocks)
    os.kill(r._child.pid, signal.SIGKILL)    # what the kernel's OOM killer would do
    with pytest.raises(AudioError, match=f"{CRASHED} \\(killed by SIGKILL\\)"):
        list(blocks)
    with pytest.raises(AudioError, match=CRASHED):
        with open_audio(make.write("crash-midway.wav", speechlike(3.0), SR)) as r2:
            list(r2.blocks(block_s=0.5))
    after = pool().pids()
    assert len(after) == len(before) and set(after) != set(before)   # the dead were replaced
    assert len(load_audio(p).samples) == len(np.concatenate(list(open_audio(p).blocks())))


def wait_until_dead(pid: int) -> None:
    """Until the kernel has ended `pid` (a zombie, not yet reaped)."""
    for _ in range(3000):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)
    raise AssertionError(f"{pid} is still running")


def test_an_idle_child_killed_is_replaced_before_the_next_file(faults, make):
    p = make.write("ok.wav", speechlike(1.0), SR)
    list(open_audio(p).blocks())
    for pid in pool().pids():
        os.kill(pid, signal.SIGKILL)
        wait_until_dead(pid)
    assert len(np.concatenate(list(open_audio(p).blocks()))) == SR


def test_reading_only_the_header_keeps_the_child(faults, make):
    p = make.write("header.wav", speechlike(1.0), SR)
    list(open_audio(p).blocks())
    started = pool().started
    for _ in range(3):
        with open_audio(p) as r:
            assert r.facts.duration_s == pytest.approx(1.0)
    with open_audio(p) as r:      # abandoned mid-stream: that child is replaced
        next(r.blocks(block_s=0.1))
    assert pool().started == started + 1


def test_a_clean_decode_error_keeps_the_child(faults, make):
    list(open_audio(make.write("warm.wav", speechlike(1.0), SR)).blocks())
    started = pool().started
    for _ in range(3):
        with pytest.raises(AudioError, match="bad.wav: .*not a supported audio file"):
            open_audio(b"garbage" * 50, name="bad.wav")
    assert pool().started == started


def test_the_child_has_no_network_where_the_kernel_allows_it(faults, make):
    list(open_audio(make.write("n.wav", speechlike(0.5), SR)).blocks())
    hello = next(c.hello for c in pool()._live if c.hello)
    if not hello["network_cut"]:
        pytest.skip("this kernel refuses unprivileged user namespaces: the child keeps the network")
    assert hello["address_space_cap"] > 0


def test_isolation_off_decodes_in_process(monkeypatch, make):
    monkeypatch.setenv("DEEPFAKE_DECODE_ISOLATION", "0")
    with open_audio(make.write("in.wav", speechlike(0.5), SR)) as r:
        assert isinstance(r, AudioReader)


def test_bad_limits_are_config_errors(monkeypatch):
    from core.errors import ConfigError

    monkeypatch.setenv("DEEPFAKE_DECODE_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match="DEEPFAKE_DECODE_TIMEOUT_S='soon' is not a number"):
        DecodeLimits.from_env()


# ----------------------------------------------------------------------------- what the scorer accepts back


def test_facts_from_the_child_are_checked_field_by_field():
    facts = AudioFacts("a.wav", "WAV", "PCM_16", 16000, 1, duration_s=1.0)
    back = wire.facts_from_json(bytearray(wire.facts_to_json(facts)), "scorer's name")
    assert back.name == "scorer's name" and back.duration_s == 1.0
    bad = bytearray(wire.facts_to_json(facts).replace(b'"channels": 1', b'"channels": "__import__"'))
    with pytest.raises(wire.ProtocolViolation, match="channels"):
        wire.facts_from_json(bad, "a.wav")
    with pytest.raises(wire.ProtocolViolation, match="NaN"):
        wire.samples_from(bytearray(np.array([0.0, np.nan], "<f4").tobytes()))
    r, w = os.pipe()
    try:
        os.write(w, b"B" + (1 << 40).to_bytes(8, "little"))
        with pytest.raises(wire.ProtocolViolation, match="at most"):
            wire.read_frame(r)
    finally:
        os.close(r)
        os.close(w)


# ----------------------------------------------------------------------------- the CLI batch


def test_cli_batch_writes_error_rows_for_crashing_and_hanging_files(make, fast_weights, tmp_path):
    for name in ("a.wav", "crash-segv.wav", "b.wav", "crash-hang.wav"):
        make.write(name, speechlike(2.0), SR)
    out = tmp_path / "out.csv"
    env = dict(python_env(), **HOOK)
    cmd = [sys.executable, "-m", "core", "batch", str(make.folder), "--out", str(out), "--set", "seed",
           "--models", FAST_MODELS, "--weights-dir", str(fast_weights), "--no-download", "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {os.path.basename(row["file"]): row for row in csv.DictReader(out.open())}
    assert sorted(rows) == ["a.wav", "b.wav", "crash-hang.wav", "crash-segv.wav"]
    assert rows["a.wav"]["p_fake_ensemble"] and rows["b.wav"]["p_fake_ensemble"]
    assert CRASHED in rows["crash-segv.wav"]["error"] and not rows["crash-segv.wav"]["p_fake_ensemble"]
    assert TIMED_OUT in rows["crash-hang.wav"]["error"] and not rows["crash-hang.wav"]["p_fake_ensemble"]
    assert "2 scored, 2 error rows" in r.stdout + r.stderr


# ----------------------------------------------------------------------------- what FFmpeg may open


@pytest.mark.parametrize("body", [b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", b"ffconcat version 1.0\nfile /etc/passwd\n",
                                  b"<?xml version='1.0'?><MPD></MPD>"])
def test_playlists_never_reach_ffmpeg(make, monkeypatch, body):
    """soundfile refuses these; FFmpeg would follow the names inside. It is not even asked."""
    from torchcodec import decoders

    def no_ffmpeg(*a, **k):
        raise AssertionError("FFmpeg was asked to open a playlist")

    monkeypatch.setattr(decoders, "AudioDecoder", no_ffmpeg)
    p = make.folder / "list.m4a"
    p.write_bytes(body)
    for source in (p, body):
        with pytest.raises(AudioError, match="match no audio container FFmpeg may open"):
            load_audio(source, name="list.m4a")


def test_ffmpeg_gets_an_open_file_not_a_path(make, monkeypatch):
    """A path would be parsed for protocols (`concat:`, `subfile,`, `http:`); a file object is not."""
    from torchcodec import decoders

    seen = []
    real = decoders.AudioDecoder

    def spy(source, *a, **k):
        seen.append(source)
        return real(source, *a, **k)

    monkeypatch.setattr(decoders, "AudioDecoder", spy)
    p = make.folder / "concat:x.m4a"
    p.write_bytes(b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 64)
    with pytest.raises(AudioError):
        load_audio(p)
    assert seen and not isinstance(seen[0], (str, os.PathLike)) and hasattr(seen[0], "read")


# ----------------------------------------------------------------------------- the pages


def test_analyze_page_shows_a_red_box_for_a_crashing_or_hanging_file_and_scores_the_next(faults, app_env):
    from app_helpers import new_app, no_exception

    good = speechlike(3.0)
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, good, SR, format="WAV")
    data = buf.getvalue()
    for name, expect in (("crash-segv.wav", CRASHED), ("crash-hang.wav", TIMED_OUT), ("fine.wav", None)):
        at = new_app("pages/1_Analyze_a_file.py")
        at.file_uploader(key="analyze_upload").upload(name, data, "audio/wav")
        at.run()
        no_exception(at)
        errors = [e.value for e in at.error]
        if expect:
            assert len(errors) == 1 and errors[0].startswith(f"{name}: {expect}"), errors
            assert not at.metric
        else:
            verdicts = [e.value for e in [*at.success, *at.error, *at.warning] if "ensemble P(fake)" in e.value]
            assert len(verdicts) == 1 and at.metric, errors                 # a "likely fake" box is red too
            assert not [e for e in errors if CRASHED in e or TIMED_OUT in e]
            assert len(at.get("plotly_chart")) >= 3                         # timeline, waveform, spectrogram


def test_batch_page_lists_crashing_and_hanging_uploads_as_errors(faults, app_env):
    from app_helpers import new_app, no_exception

    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, speechlike(3.0), SR, format="WAV")
    names = ["one.wav", "crash-segv.wav", "two.wav", "crash-hang.wav"]
    at = new_app("pages/2_Batch_scoring.py")
    up = at.file_uploader(key="batch_upload")
    for n in names:
        up.upload(n, buf.getvalue(), "audio/wav")
    at.run()
    at.button(key="batch_run").click().run()
    no_exception(at)
    df = next(d.value for d in at.dataframe if "p_fake_ensemble" in d.value.columns).set_index("file")
    assert sorted(df.index) == sorted(names)
    assert CRASHED in df.loc["crash-segv.wav", "error"] and TIMED_OUT in df.loc["crash-hang.wav", "error"]
    assert df.loc[["one.wav", "two.wav"], "p_fake_ensemble"].notna().all()
    assert df.loc[["crash-segv.wav", "crash-hang.wav"], "p_fake_ensemble"].isna().all()


def test_ray_actor_rows_carry_the_crash_and_the_hang(faults, make, fast_weights):
    """The Ray engine's actor class on its own (no Ray needed): its Detector decodes in children too."""
    import json

    from core.ray_engine import ScorerActor

    paths = [make.write(n, speechlike(2.0), SR) for n in ("a.wav", "crash-segv.wav", "crash-hang.wav", "b.wav")]
    actor = ScorerActor(dict(set_name="seed", models=FAST_MODELS, weights_dir=str(fast_weights),
                             allow_download=False))
    out = actor({"path": np.array([str(p) for p in paths]), "name": np.array([p.name for p in paths])})
    rows = {r["file"]: r for r in map(json.loads, out["row"])}
    assert CRASHED in rows["crash-segv.wav"]["error"] and TIMED_OUT in rows["crash-hang.wav"]["error"]
    assert rows["a.wav"]["p_fake_ensemble"] != "" and rows["b.wav"]["p_fake_ensemble"] != ""


def test_children_end_with_the_interpreter(make):
    """atexit stops the pool; a child also quits when the scorer's pipe closes (the scorer was killed)."""
    p = make.write("exit.wav", speechlike(0.5), SR)
    code = ("import sys; from core.decoding import open_audio; from core import decode_pool as dp; "
            "from core.decode_limits import DecodeLimits; list(open_audio(sys.argv[1]).blocks()); "
            "print(*dp.shared_pool(DecodeLimits.from_env()).pids()); sys.stdout.flush()")
    for how in ("exit", "SIGKILL"):
        script = code + ("" if how == "exit" else "; import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        r = subprocess.run([sys.executable, "-c", script, str(p)], env=dict(python_env(), DEEPFAKE_DECODE_WORKERS="1"),
                           capture_output=True, text=True, timeout=120)
        pids = [int(x) for x in r.stdout.split()]
        assert len(pids) == 1, (how, r.stdout, r.stderr)
        for pid in pids:
            wait_until_dead(pid)
