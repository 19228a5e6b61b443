"""Fault injection for the decoder child (tests only): DEEPFAKE_DECODE_TEST_HOOK=tests.decode_faults.

Imported by core.decode_worker at start-up. Makes the in-child decoder misbehave for files
whose name contains a marker, the way a hostile file would make libsndfile or FFmpeg do:

  crash-segv      a real segmentation fault (a NULL read in C)
  crash-hang      never returns, without using CPU
  crash-spin      never returns, burning CPU
  crash-balloon   asks for far more memory than the child may have
  crash-midway    streams the first block, then segfaults
"""

from __future__ import annotations

import ctypes
import time

import numpy as np

import core.audio as audio

_real_open = audio.AudioReader._open
_real_blocks = audio.AudioReader.blocks


def _segfault() -> None:
    ctypes.string_at(0)


def _faulty_open(self) -> None:
    if "crash-segv" in self.name:
        _segfault()
    if "crash-hang" in self.name:
        time.sleep(3600)
    if "crash-spin" in self.name:
        while True:
            pass
    if "crash-balloon" in self.name:
        np.ones(1 << 40, np.uint8)   # 1 TB: beyond any address-space cap
    _real_open(self)


def _faulty_blocks(self, block_s: float = 30.0, native=None):
    for i, block in enumerate(_real_blocks(self, block_s, native=native)):
        if i == 1 and "crash-midway" in self.name:
            _segfault()
        yield block


audio.AudioReader._open = _faulty_open
audio.AudioReader.blocks = _faulty_blocks
