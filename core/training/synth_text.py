"""Varied English sentences for synthetic speech, reproducible from a seed.

A detector fed fakes that all say one template sentence can learn the sentence (its words,
its rhythm, its length) instead of the voice. So `synth` draws each clip's text from several
kinds of utterance (news, phone talk, numbers, names, questions) built from a few hundred words
and phrases, 4 to 25 words long, and never repeats a sentence within a stream. The stream
depends only on the seed, so a resumed or repeated run assigns every clip the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

MIN_WORDS, MAX_WORDS = 4, 25

FIRST_NAMES = ["Maria", "James", "Aisha", "Tom", "Priya", "Daniel", "Sofia", "Kevin", "Elena", "Marcus",
               "Hannah", "Omar", "Grace", "Lucas", "Mei", "Patrick", "Fatima", "George", "Yuki", "Rachel",
               "Ivan", "Chloe", "Samuel", "Nadia", "Arthur", "Leila", "Victor", "Emma", "Rahul", "Olivia",
               "Felix", "Zara", "Henry", "Ingrid", "Carlos", "Alice", "Dmitri", "Ruth", "Kwame", "Lucy"]
SURNAMES = ["Thompson", "Okafor", "Nakamura", "Garcia", "Fischer", "Kowalski", "Patel", "Murphy", "Rossi",
            "Andersen", "Haddad", "Chen", "Walker", "Dubois", "Silva", "Novak", "Brennan", "Larsen",
            "Mendes", "Whitfield", "Ahmed", "Schneider", "Price", "Moreau", "Kim", "Hughes"]
CITIES = ["Manchester", "Lisbon", "Denver", "Nairobi", "Toronto", "Glasgow", "Osaka", "Madrid", "Chicago",
          "Dublin", "Melbourne", "Houston", "Vienna", "Cardiff", "Seattle", "Lagos", "Krakow", "Auckland"]
PLACES = CITIES + ["the harbour", "the north terminal", "the old town", "the city hall", "the main square",
                   "the hospital", "the airport", "the train station", "the river bank", "the conference centre",
                   "the school", "the warehouse", "the stadium", "the library", "the night market"]
TITLES = ["the minister", "the mayor", "spokeswoman", "the chief executive", "the head teacher",
          "senior official", "the committee chair", "the police commissioner", "the union leader",
          "the health secretary", "local councillor", "the finance director", "the prime minister",
          "the opposition leader", "the ambassador", "the coach"]
BODIES = ["the court", "an independent auditor", "the airline", "the central bank", "the fire service",
          "the weather office", "the city council", "the regulator", "the university", "the hospital trust"]
NEWS_VERBS = ["confirmed", "denied", "announced", "postponed", "approved", "questioned", "cancelled",
              "defended", "criticised", "unveiled", "rejected", "welcomed", "delayed", "reviewed",
              "suspended", "backed", "signed", "published", "withdrew", "praised"]
NEWS_OBJECTS = ["the new budget", "plans for a second runway", "the final report", "a ban on night flights",
                "the pay offer", "the housing scheme", "changes to the bus timetable", "the trade agreement",
                "the school closures", "a review of the water supply", "the tax cuts", "the rescue operation",
                "new rules for drivers", "the hospital expansion", "the energy contract", "the recycling targets",
                "the election results", "a plan to rebuild the bridge", "the ceasefire talks",
                "the cost of the project"]
TIMES = ["this morning", "on Monday", "late last night", "earlier today", "on Thursday afternoon",
         "after weeks of talks", "at the weekend", "before the deadline", "for the third time this year",
         "in a brief statement", "without warning", "at a press conference", "in the early hours",
         "next spring", "by the end of the month", "on Friday", "two days ago", "this evening",
         "after a long debate", "at short notice"]
REACTIONS = ["residents said they were relieved", "critics called it a mistake", "shares fell sharply",
             "nobody has been arrested", "the decision surprised many", "talks will continue tomorrow",
             "the details remain unclear", "no reason was given", "protesters gathered outside",
             "officials expect further delays", "the vote was close", "prices are expected to rise"]
GREETINGS = ["Hi", "Hello", "Hey", "Good morning", "Good evening", "Listen", "Sorry", "Okay", "Right",
             "Excuse me"]
REQUESTS = ["call me back", "send me the address", "pick up some milk", "check the invoice",
            "move the meeting", "book a table for four", "forward that email", "lock the back door",
            "reset my password", "bring the charger", "confirm the booking", "feed the cat",
            "sign the form", "text me when you land", "water the plants", "cancel my appointment",
            "transfer the deposit", "wait for me outside", "print two copies", "ask about the refund"]
ASIDES = ["when you get a minute", "as soon as you can", "before six", "if it is not too much trouble",
          "by tomorrow", "later tonight", "first thing in the morning", "after lunch", "on your way home",
          "before the weekend"]
FEELINGS = ["I think", "I am pretty sure", "Honestly, I feel", "I heard", "To be fair,", "I doubt",
            "It looks like", "I guess", "My sister says", "Apparently"]
CLAIMS = ["the parcel never arrived", "we are running a bit late", "the printer is broken again",
          "the new café is worth a visit", "the match was cancelled", "the heating needs fixing",
          "the car is making a strange noise", "nobody read the contract", "the train was packed",
          "the kids loved the museum", "the rent is going up", "the internet is down", "the form was wrong",
          "it will rain all week", "the battery is almost empty", "they changed the password"]
THINGS = ["the ticket", "the repair", "a new laptop", "the hotel room", "the parking fine", "the insurance",
          "dinner for two", "the flight upgrade", "the electricity bill", "a monthly pass"]
ACCOUNTS = ["account", "reference", "booking", "order", "tracking", "membership", "policy", "case"]
UNITS = ["kilometres", "minutes", "people", "percent", "euros", "degrees", "hours", "boxes", "miles",
         "litres"]
QUESTION_STARTS = ["Did", "Will", "Should", "Could", "Would", "Can"]
QUESTION_VERBS = ["finish the report", "visit", "hear from", "meet", "call", "forget about", "email",
                  "pay for", "remember", "look at"]
WH_QUESTIONS = ["Where did you leave", "When are we collecting", "Who is paying for", "Why did nobody mention",
                "How long will it take to fix", "What happened to", "Which of you has", "How much was"]
ADJECTIVES = ["quiet", "busy", "expensive", "cold", "crowded", "noisy", "strange", "empty", "warm",
              "chaotic", "cheerful", "slow"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


class _Draw:
    """A seeded picker: the only source of randomness in this module."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __call__(self, items: Sequence[str]) -> str:
        return items[int(self.rng.integers(len(items)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))


def _name(d: _Draw) -> str:
    return f"{d(FIRST_NAMES)} {d(SURNAMES)}" if d.chance(0.5) else d(FIRST_NAMES)


def _news(d: _Draw) -> str:
    if d.chance(0.4):
        who = d(BODIES)
    else:
        title = d(TITLES)
        who = f"{title} {_name(d)}" if d.chance(0.4) else (title if title.startswith("the ") else f"a {title}")
    s = f"{who} {d(NEWS_VERBS)} {d(NEWS_OBJECTS)} {d(TIMES)}"
    if d.chance(0.4):
        s += f" in {d(CITIES)}"
    if d.chance(0.35):
        s += f", and {d(REACTIONS)}"
    return s + "."


def _conversation(d: _Draw) -> str:
    kind = d.int(0, 2)
    if kind == 0:
        return f"{d(GREETINGS)} {d(FIRST_NAMES)}, could you {d(REQUESTS)} {d(ASIDES)}?"
    if kind == 1:
        tail = f", so {d(REQUESTS)} {d(ASIDES)}" if d.chance(0.4) else ""
        return f"{d(FEELINGS)} {d(CLAIMS)}{tail}."
    return f"{d(GREETINGS)}, it is {d(FIRST_NAMES)} here, {d(CLAIMS)}, please {d(REQUESTS)}."


def _numbers(d: _Draw) -> str:
    kind = d.int(0, 4)
    if kind == 0:
        digits = " ".join(str(d.int(0, 9)) for _ in range(d.int(4, 8)))
        return f"Your {d(ACCOUNTS)} number is {digits}."
    if kind == 1:
        return f"{d(THINGS).capitalize()} came to {d.int(3, 999)} pounds and {d.int(1, 99)} pence."
    if kind == 2:
        return (f"Flight {d('ABCDEFGHJKLMNPRSTUVWXYZ')}{d('ABCDEFGHJKLMNPRSTUVWXYZ')} {d.int(100, 9999)} "
                f"leaves from gate {d.int(1, 60)} at {d.int(1, 12)}:{d.int(0, 5)}{d.int(0, 9)}.")
    if kind == 3:
        return f"About {d.int(2, 5000)} {d(UNITS)} were recorded {d(TIMES)} in {d(CITIES)}."
    return f"The meeting is on {d(WEEKDAYS)} the {_ordinal(d.int(1, 28))} of {d(MONTHS)}, room {d.int(1, 450)}."


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _names(d: _Draw) -> str:
    kind = d.int(0, 2)
    if kind == 0:
        return f"This is {_name(d)} calling from {d(PLACES)} about {d(THINGS)}."
    if kind == 1:
        return f"{_name(d)} and {_name(d)} met at {d(PLACES)} {d(TIMES)}."
    return f"Please ask for {_name(d)} at {d(PLACES)}, it is usually {d(ADJECTIVES)} there."


def _question(d: _Draw) -> str:
    kind = d.int(0, 2)
    if kind == 0:
        return f"{d(QUESTION_STARTS)} {d(FIRST_NAMES)} {d(QUESTION_VERBS)} {d(THINGS)} {d(TIMES)}?"
    if kind == 1:
        return f"{d(WH_QUESTIONS)} {d(THINGS)}?"
    return f"Is {d(PLACES)} always this {d(ADJECTIVES)} on a {d(WEEKDAYS)}?"


KINDS: dict[str, Callable[[_Draw], str]] = {"news": _news, "conversation": _conversation,
                                            "numbers": _numbers, "names": _names, "question": _question}


def _tidy(s: str) -> str:
    s = " ".join(s.split())
    return s[0].upper() + s[1:]


def sentence_stream(seed: int, max_tries: int = 1000) -> Iterator[str]:
    """Endless, never-repeating sentences of MIN_WORDS..MAX_WORDS words, a function of `seed` only.

    Each sentence is one utterance, sometimes two joined; the kind of utterance is drawn anew
    each time. Raises RuntimeError if the grammar runs dry (it holds millions of sentences).
    """
    d = _Draw(np.random.default_rng([seed, 0x5EED]))
    kinds = list(KINDS.values())
    seen: set[str] = set()
    while True:
        for _ in range(max_tries):
            s = _tidy(d(kinds)(d))
            if d.chance(0.2):
                s = f"{s} {_tidy(d(kinds)(d))}"
            if MIN_WORDS <= len(s.split()) <= MAX_WORDS and s not in seen:
                break
        else:
            raise RuntimeError(f"no new sentence after {max_tries} tries ({len(seen)} made)")
        seen.add(s)
        yield s


def sentences(seed: int, count: int) -> list[str]:
    """The first `count` sentences of `sentence_stream(seed)`."""
    stream = sentence_stream(seed)
    return [next(stream) for _ in range(count)]
