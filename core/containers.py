"""Which files FFmpeg may open: audio containers recognised by their first bytes.

Why: FFmpeg picks its demuxer from the content, and some of its demuxers read more than the
file. A playlist (HLS `#EXTM3U`, DASH, `ffconcat`, ...) names other files or URLs that FFmpeg
would then open. Only the containers below are handed to it; everything else is refused
before FFmpeg parses a byte. (soundfile reads wav/flac/ogg/mp3/aiff first; FFmpeg is the
fallback for what it cannot read, m4a/aac above all, and for damaged files of those kinds.)
"""

from __future__ import annotations

SNIFF_BYTES = 16


def _mpeg_audio_sync(h: bytes) -> bool:   # an MP3 or ADTS AAC frame header: 11 sync bits
    return len(h) >= 2 and h[0] == 0xFF and (h[1] & 0xE0) == 0xE0


_SIGNATURES = {
    "MP4/M4A/3GP": lambda h: h[4:8] == b"ftyp",
    "QuickTime (no ftyp)": lambda h: h[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"),
    "MP3 with ID3 tag": lambda h: h[:3] == b"ID3",
    "MP3 or ADTS AAC": _mpeg_audio_sync,
    "Matroska/WebM": lambda h: h[:4] == b"\x1a\x45\xdf\xa3",
    "ASF/WMA": lambda h: h[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"),
    "AMR": lambda h: h[:5] == b"#!AMR",
    "CAF": lambda h: h[:4] == b"caff",
    "AC-3": lambda h: h[:2] == b"\x0b\x77",
    "WAV/RF64/W64": lambda h: h[:4] in (b"RIFF", b"RF64", b"riff"),
    "FLAC": lambda h: h[:4] == b"fLaC",
    "Ogg": lambda h: h[:4] == b"OggS",
    "AIFF": lambda h: h[:4] == b"FORM",
}


def ffmpeg_container(head: bytes) -> str | None:
    """The name of the allowed container these first bytes start, or None (FFmpeg must not open it)."""
    for name, matches in _SIGNATURES.items():
        if matches(head[:SNIFF_BYTES]):
            return name
    return None
