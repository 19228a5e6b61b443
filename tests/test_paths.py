"""core/paths.py: folder scoring cannot read outside the configured data root.

'..', absolute and home paths outside the root, and symlinks that lead out (to a file or a folder, directly
or through a chain of links) are refused or skipped; odd input (NUL bytes, symlink loops,
over-long names) is a ConfigError, never another exception.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.errors import ConfigError, DetectorError
from core.paths import ENV_DATA_ROOT, data_root, keep_under_root, list_audio_under_root, resolve_under_root


def wav(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(p, (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32), 16000)
    return p


@pytest.fixture
def tree(tmp_path):
    """root/ with audio, plus a sibling 'outside/' holding secrets, and every kind of link."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    wav(root / "calls" / "a.wav")
    wav(root / "calls" / "deep" / "b.flac")
    wav(root / "top.wav")
    secret = wav(outside / "secret.wav")
    wav(outside / "more" / "secret2.wav")
    (outside / "passwd.wav").write_text("root:x:0:0")
    links = root / "calls"
    (links / "file_out.wav").symlink_to(secret)                                # file link out
    (links / "dir_out").symlink_to(outside, target_is_directory=True)          # folder link out
    (links / "rel_out.wav").symlink_to(Path("..") / ".." / "outside" / "secret.wav")  # relative link out
    (links / "hop").symlink_to(root / "calls" / "dir_out", target_is_directory=True)  # chain: in -> in -> out
    (links / "abs_in.wav").symlink_to(root / "top.wav")                        # link inside: fine
    (links / "dir_in").symlink_to(root / "calls" / "deep", target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)                 # loop back to the root
    (links / "self.wav").symlink_to(links / "self.wav")                        # a link to itself
    (links / "dangling.wav").symlink_to(root / "nowhere.wav")
    return root, outside


def rels(paths, root):
    return sorted(os.path.relpath(p, root) for p in paths)


# ============================================================================ refused paths


@pytest.mark.parametrize("rel", ["..", "../outside", "calls/../../outside", "./../outside/secret.wav",
                                 "calls/..", "calls/deep/../../.."])
def test_dot_dot_is_refused(tree, rel):
    root, _ = tree
    with pytest.raises(ConfigError, match=r"'\.\.' is not allowed"):
        resolve_under_root(root, rel)
    with pytest.raises(ConfigError):
        list_audio_under_root(root, rel)


@pytest.mark.parametrize("rel", ["/", "/etc", "/etc/passwd", "~", "~/x", "  /etc  "])
def test_absolute_and_home_paths_outside_the_root_are_refused(tree, rel):
    root, _ = tree
    with pytest.raises(ConfigError, match="is outside the data root"):
        resolve_under_root(root, rel)


@pytest.mark.parametrize("rel", ["\\\\server\\share", "C:\\Windows", "c:/x"])
def test_foreign_path_forms_are_refused(tree, rel):
    root, _ = tree
    with pytest.raises(ConfigError, match="not a path on this server"):
        resolve_under_root(root, rel)


def test_absolute_paths_under_the_root_are_accepted(tree):
    root, outside = tree
    assert resolve_under_root(root, str(root)) == root.resolve()
    assert resolve_under_root(root, f"  {root}/calls/  ") == (root / "calls").resolve()
    assert resolve_under_root(root, str(root / "calls" / "abs_in.wav")) == (root / "top.wav").resolve()
    assert rels(list_audio_under_root(root, str(root / "calls" / "deep")), root) == ["calls/deep/b.flac"]
    with pytest.raises(ConfigError, match="is outside the data root"):
        resolve_under_root(root, str(outside))
    with pytest.raises(ConfigError, match="is outside the data root"):   # an absolute link out
        resolve_under_root(root, str(root / "calls" / "dir_out"))
    with pytest.raises(ConfigError, match=r"'\.\.' is not allowed"):
        resolve_under_root(root, f"{root}/calls/../../outside")


@pytest.mark.parametrize("rel", ["calls/file_out.wav", "calls/rel_out.wav", "calls/dir_out",
                                 "calls/dir_out/secret.wav", "calls/dir_out/more", "calls/hop",
                                 "calls/hop/secret.wav"])
def test_symlinks_leading_out_are_refused(tree, rel):
    root, _ = tree
    with pytest.raises(ConfigError, match="outside the data root"):
        resolve_under_root(root, rel)
    with pytest.raises(ConfigError):
        list_audio_under_root(root, rel)


@pytest.mark.parametrize("rel", ["a\x00b", "calls/\x00", "x" * 5000, "calls/" + "y/" * 3000, "calls/self.wav",
                                 "calls/self.wav/x", "nope", "calls/dangling.wav"])
def test_odd_input_is_a_config_error(tree, rel):
    root, _ = tree
    with pytest.raises(ConfigError) as e:
        resolve_under_root(root, rel)
    assert "\n" not in str(e.value)


# ============================================================================ allowed paths and listings


@pytest.mark.parametrize("rel,expected", [("", "."), (" ", "."), (".", "."), ("./calls", "calls"),
                                          ("calls/", "calls"), ("calls/deep/b.flac", "calls/deep/b.flac"),
                                          ("calls/abs_in.wav", "top.wav"), ("calls/dir_in", "calls/deep"),
                                          ("loop/calls", "calls"), ("loop/loop/top.wav", "top.wav")])
def test_paths_inside_the_root_resolve(tree, rel, expected):
    root, _ = tree
    got = resolve_under_root(root, rel)
    assert got == (root.resolve() / expected).resolve()


def test_listing_skips_everything_that_leads_out(tree):
    root, outside = tree
    files = list_audio_under_root(root, "")
    real = {Path(f).resolve() for f in files}
    assert all(root.resolve() in r.parents for r in real), "a listed file is outside the root"
    assert not any(outside.resolve() in r.parents for r in real)
    names = rels(files, root)
    assert "calls/a.wav" in names and "calls/deep/b.flac" in names and "top.wav" in names
    assert "calls/abs_in.wav" in names                                   # a link that stays inside
    for bad in ("calls/file_out.wav", "calls/rel_out.wav", "calls/self.wav"):
        assert bad not in names
    assert not any(n.startswith(("calls/dir_out", "calls/hop")) for n in names)
    assert not any("secret" in n or "passwd" in n for n in names)


def test_listing_a_subfolder(tree):
    root, _ = tree
    assert rels(list_audio_under_root(root, "calls/deep"), root) == ["calls/deep/b.flac"]
    assert rels(list_audio_under_root(root, "calls/dir_in"), root) == ["calls/deep/b.flac"]  # resolved


def test_listing_a_single_file(tree):
    root, _ = tree
    assert rels(list_audio_under_root(root, "top.wav"), root) == ["top.wav"]


def test_a_root_that_is_itself_a_symlink(tree, tmp_path):
    root, _ = tree
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert resolve_under_root(alias, "calls") == (root / "calls").resolve()
    with pytest.raises(ConfigError, match="outside"):
        resolve_under_root(alias, "calls/file_out.wav")
    assert "top.wav" in rels([Path(f).resolve() for f in list_audio_under_root(alias)], root.resolve())


def test_a_link_retargeted_outside_after_listing_is_refused_on_resolve(tree):
    """The check is made on each resolve, not cached: a link moved out is refused the next time."""
    root, outside = tree
    link = root / "calls" / "moving.wav"
    link.symlink_to(root / "top.wav")
    assert resolve_under_root(root, "calls/moving.wav") == (root / "top.wav").resolve()
    link.unlink()
    link.symlink_to(outside / "secret.wav")
    with pytest.raises(ConfigError, match="outside"):
        resolve_under_root(root, "calls/moving.wav")


def test_a_listing_is_checked_again_before_reading(tree, tmp_path):
    """A listing kept (cached) while links change: keep_under_root drops what now leads out,
    including files below a folder that was swapped for a link."""
    root, outside = tree
    listed = list_audio_under_root(root, "calls")
    assert keep_under_root(root, listed) == listed
    moved = root / "calls" / "deep"
    moved.rename(tmp_path / "deep_moved")
    moved.symlink_to(outside, target_is_directory=True)        # calls/deep -> outside
    (root / "calls" / "abs_in.wav").unlink()
    (root / "calls" / "abs_in.wav").symlink_to(outside / "secret.wav")
    kept = rels(keep_under_root(root, listed), root)
    assert kept == ["calls/a.wav", "calls/dangling.wav"]   # the dangling link points inside: an error row
    assert keep_under_root(root, [outside / "secret.wav", "/etc/passwd", root / "top.wav"]) == [root / "top.wav"]


# ============================================================================ the configured root


def test_data_root_from_argument_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_DATA_ROOT, raising=False)
    assert data_root() is None
    monkeypatch.setenv(ENV_DATA_ROOT, str(tmp_path))
    assert data_root() == tmp_path.resolve()
    other = tmp_path / "other"
    other.mkdir()
    assert data_root(other) == other.resolve()                          # the argument wins
    monkeypatch.setenv(ENV_DATA_ROOT, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="not a folder"):
        data_root()
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        data_root(f)


def test_errors_are_the_projects_type(tree):
    root, _ = tree
    for rel in ("..", "/etc", "calls/file_out.wav", "a\x00b", "calls/self.wav"):
        with pytest.raises(DetectorError):
            list_audio_under_root(root, rel)
