"""Is a voice speaking, and in which language: cautions the detectors' scores cannot give themselves.

The detectors judge voices, in the languages they trained on. On music, noise or a language they
never saw on both sides, their P(fake) means little, so the file's verdict should say so. The
answers come from multilingual Whisper's first decoder step (`models/whisper_decoder.py`) on
the file's first 30 s; the training languages come from each weighted model's card
(`training_languages`, written by `core.training.languages`).

Rules (each names itself in the caution):
  * no speech: Whisper's P(no speech) at least `NO_SPEECH_P`;
  * language: Whisper is at least `LANGUAGE_P` sure of a language, and some weighted model saw
    fewer than `MIN_CLIPS_PER_CLASS` real or fake training clips in it (a language seen on one
    side only is worse than one never seen: the language itself becomes the evidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .audio import TARGET_SR

NO_SPEECH_P = 0.6          # openai-whisper's own no_speech_threshold
LANGUAGE_P = 0.5
MIN_CLIPS_PER_CLASS = 20
HEAD_SAMPLES = 30 * TARGET_SR
CHECK_FAILED = "the language and speech check could not run"   # its warning; batch.py reads it on resume

LANGUAGE_NAMES = {
    "en": "English", "zh": "Chinese", "de": "German", "es": "Spanish", "ru": "Russian", "ko": "Korean",
    "fr": "French", "ja": "Japanese", "pt": "Portuguese", "tr": "Turkish", "pl": "Polish", "ca": "Catalan",
    "nl": "Dutch", "ar": "Arabic", "sv": "Swedish", "it": "Italian", "id": "Indonesian", "hi": "Hindi",
    "fi": "Finnish", "vi": "Vietnamese", "he": "Hebrew", "uk": "Ukrainian", "el": "Greek", "ms": "Malay",
    "cs": "Czech", "ro": "Romanian", "da": "Danish", "hu": "Hungarian", "ta": "Tamil", "no": "Norwegian",
    "th": "Thai", "ur": "Urdu", "hr": "Croatian", "bg": "Bulgarian", "lt": "Lithuanian", "la": "Latin",
    "fa": "Persian", "bn": "Bengali", "sr": "Serbian", "sk": "Slovak", "te": "Telugu", "sw": "Swahili",
    "gu": "Gujarati", "ne": "Nepali", "af": "Afrikaans", "jw": "Javanese", "tl": "Tagalog", "yo": "Yoruba",
    "ha": "Hausa", "mr": "Marathi", "pa": "Punjabi", "tn": "Tswana", "yue": "Cantonese", "nn": "Nynorsk",
}
# the training manifests' codes where Whisper's differ
_MANIFEST_ALIASES = {"jv": "jw", "yue": "zh"}


def language_name(code: str) -> str:
    name = LANGUAGE_NAMES.get(code)
    return f"{name} ({code})" if name else code


@dataclass
class SpokenCheck:
    """The check's answer for one file, or why there is none (`error`)."""

    content: object | None = None      # models.whisper_decoder.SpokenContent
    error: str | None = None

    def as_dict(self) -> dict:
        return {**(self.content.as_dict() if self.content is not None else {}), "error": self.error}


def check_spoken(head: np.ndarray) -> SpokenCheck:
    """Whisper's language and speech answer for the first 30 s of 16 kHz mono audio (padded with
    silence to 30 s, as Whisper is trained). A missing package or a failure becomes `error`."""
    try:
        from .models.whisper import whisper_log_mel
        from .models.whisper_decoder import shared_language_id

        lid = shared_language_id()
        x = torch.from_numpy(np.asarray(head[:HEAD_SAMPLES], np.float32))
        x = torch.nn.functional.pad(x, (0, HEAD_SAMPLES - len(x)))
        return SpokenCheck(lid(whisper_log_mel(x)))
    except Exception as e:  # the check informs the verdict; it must never block it
        return SpokenCheck(None, f"{CHECK_FAILED} ({type(e).__name__}: {e})")


def _trained_counts(cards: dict[str, dict], code: str) -> dict[str, dict[str, int]] | None:
    """Per weighted model, its real and fake training clips in language `code` (None if no card
    lists its training languages)."""
    out = {}
    for name, card in cards.items():
        langs = (card or {}).get("training_languages")
        if not langs:
            return None
        n = {"real": 0, "fake": 0}
        for lang, c in langs.items():
            if _MANIFEST_ALIASES.get(lang, lang) == code:
                n = {k: n[k] + int(c.get(k, 0)) for k in n}
        out[name] = n
    return out


def spoken_cautions(check: SpokenCheck | None, cards: dict[str, dict]) -> list[str]:
    """Cautions from the check, judged against the weighted models' cards (name -> card)."""
    if check is None or check.content is None:
        return []
    c = check.content
    out = []
    if c.no_speech_p >= NO_SPEECH_P:
        out.append(f"Whisper hears no speech here (P(no speech) {c.no_speech_p:.2f}): music, noise or silence. "
                   "The detectors judge voices; on anything else their score means little.")
        return out     # the language of no speech is noise
    if c.language_p < LANGUAGE_P:
        return out
    counts = _trained_counts(cards, c.language)
    if not counts:
        return out
    thin = {n: k for n, k in counts.items() if min(k.values()) < MIN_CLIPS_PER_CLASS}
    if not thin:
        return out
    lang = language_name(c.language)
    parts = []
    for name, k in thin.items():
        side = (" (seen only among fakes: the language itself may read as a fake's trait)" if k["real"] == 0 < k["fake"]
                else " (seen only among reals: the language itself may read as a real's trait)"
                if k["fake"] == 0 < k["real"] else "")
        parts.append(f"{name} trained on {k['real']} real and {k['fake']} fake clips in it{side}")
    out.append(f"Language: {lang}, {c.language_p:.0%} sure. " + "; ".join(parts) + ". A language the models "
               f"saw fewer than {MIN_CLIPS_PER_CLASS} times on either side is one they cannot judge well.")
    return out


def spoken_rows(check: SpokenCheck | None) -> list[tuple[str, str]]:
    """The check's answer as (fact, value) rows for the page's and the report's facts tables."""
    if check is None:
        return []
    if check.content is None:
        return [("Language and speech", check.error or "not checked")]
    c = check.content
    others = ", ".join(f"{language_name(code)} {p:.0%}" for code, p in c.top[1:3] if p >= 0.01)
    return [("Spoken language", f"{language_name(c.language)}, {c.language_p:.0%} sure"
             + (f" (then {others})" if others else "") + " (Whisper base, first 30 s)"),
            ("Speech present", f"P(no speech) {c.no_speech_p:.2f}"
             + (" (little or no speech heard)" if c.no_speech_p >= NO_SPEECH_P else ""))]
