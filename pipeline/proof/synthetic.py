"""Synthetic news articles written for this project: a stand-in for AG News and for a
shifted source when no data directory is present (`newsflow demo` on a bare machine).

Each article is built from a topic's vocabulary with sentence templates, deterministic for
a seed. ``shifted`` articles mix in vocabulary of topics the model never saw (health,
entertainment), and some have no known topic at all (their label is ``None``).
"""

from __future__ import annotations

import random

from pipeline.core.datasets import LabelledText

TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "World": (
        ["minister", "parliament", "embassy", "ceasefire", "summit", "rebels", "election"],
        ["Baghdad", "Kabul", "Brussels", "Moscow", "Beijing", "Nairobi", "Gaza"],
    ),
    "Sports": (
        ["coach", "striker", "playoff", "season", "championship", "goal", "injury"],
        ["Yankees", "Arsenal", "the Lakers", "Ferrari", "the Olympic team", "Red Sox"],
    ),
    "Business": (
        ["shares", "profit", "merger", "quarterly earnings", "investors", "oil prices", "bank"],
        ["Wall Street", "the Fed", "Exxon", "Boeing", "the stock market", "Nasdaq"],
    ),
    "Sci/Tech": (
        ["software", "chip", "internet", "researchers", "satellite", "browser", "genome"],
        ["Microsoft", "NASA", "Intel", "Google", "Apple", "IBM", "Linux"],
    ),
}
NEW_TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "Health": (
        ["vaccine", "patients", "clinic", "diet", "symptoms", "hospital", "therapy"],
        ["doctors", "the WHO", "nurses", "a new study", "the health ministry"],
    ),
    "Entertainment": (
        ["album", "premiere", "box office", "festival", "actress", "sequel", "concert"],
        ["Hollywood", "the band", "the director", "Netflix", "the studio"],
    ),
}
TEMPLATES = [
    "{who} said the {w1} would shape the {w2} talks this week.",
    "Analysts expect the {w1} to weigh on {who} after the {w2}.",
    "{who} announced a new {w1} on Tuesday, citing the {w2}.",
    "The {w1} drew criticism from {who}, who pointed to the {w2}.",
    "Reports of a {w1} and a {w2} put {who} in the spotlight.",
]


def _article(rng: random.Random, vocab: tuple[list[str], list[str]], n: int) -> tuple[str, str]:
    words, names = vocab
    sentences = [
        rng.choice(TEMPLATES).format(
            who=rng.choice(names), w1=rng.choice(words), w2=rng.choice(words)
        )
        for _ in range(n)
    ]
    title = f"{rng.choice(names)} {rng.choice(words)} {rng.choice(['update', 'report', 'news'])}"
    return title.capitalize(), " ".join(sentences)


def synthetic_news(n: int, *, seed: int = 0, prefix: str = "syn") -> list[LabelledText]:
    """``n`` articles evenly over the four AG News topics."""
    rng = random.Random(seed)
    labels = list(TOPICS)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        title, body = _article(rng, TOPICS[label], rng.randint(2, 4))
        out.append(LabelledText(f"{prefix}-{i}", title, body, label))
    return out


def shifted_news(n: int, *, seed: int = 1) -> list[tuple[LabelledText, str | None]]:
    """Articles from a different source: mostly new topics, some blending two vocabularies.
    Returns (article, true topic among the known ones or None)."""
    rng = random.Random(seed)
    out: list[tuple[LabelledText, str | None]] = []
    for i in range(n):
        if rng.random() < 0.6:
            name = rng.choice(list(NEW_TOPICS))
            title, body = _article(rng, NEW_TOPICS[name], rng.randint(2, 4))
            out.append((LabelledText(f"shift-{i}", title, body, name), None))
        else:
            known = rng.choice(list(TOPICS))
            new = rng.choice(list(NEW_TOPICS))
            words = (TOPICS[known][0] + NEW_TOPICS[new][0], TOPICS[known][1])
            title, body = _article(rng, words, rng.randint(2, 4))
            out.append((LabelledText(f"shift-{i}", title, body, known), known))
    return out
