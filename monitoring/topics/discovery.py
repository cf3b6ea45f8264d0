"""Find candidate new topics among texts the model could not place: cluster their embeddings,
rank clusters by size and by distance from the known topics, describe each with its most
distinctive terms (class-based TF-IDF) and example titles, and mark candidates whose centroids
are near each other (one kind of news split in several clusters: an admin may name them as
one topic). Pure: embeddings come in.

Example:
    >>> found = discover(pool, known, embed=embed_texts)  # doctest: +SKIP
    >>> found[0].terms[:3]  # doctest: +SKIP
    ['god', 'church', 'jesus']
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]
_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_STOP_TEXT = """
    about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can cannot could did didn't do does doesn't doing
    don't down during each few for from further had has have having he her here hers herself
    him himself his how i if in into is isn't it it's its itself just let's me more most my
    myself no nor not now of off on once only or other ought our ours ourselves out over own
    said same say says she should so some such than that that's the their theirs them
    themselves then there these they this those through to too under until up us very was
    we were what when where which while who whom why will with would you your yours yourself
    yourselves one two new like get got also may might must many much even still well back
    year years first last next time people way make made know think want use used going"""
STOPWORDS = frozenset(_STOP_TEXT.split())


@dataclasses.dataclass(frozen=True)
class PoolItem:
    """An article the model could not place: marked "none of these" or low confidence."""

    article_id: str
    title: str
    text: str
    source: str  # "none_of_these" | "low_confidence"


@dataclasses.dataclass(frozen=True)
class Candidate:
    members: list[str]  # article ids
    size: int
    separation: float  # 1 - cosine similarity of its centroid to the nearest known topic
    nearest_topic: str
    cohesion: float  # mean cosine similarity of members to their centroid
    none_of_these: int  # members a reviewer marked "none of these"
    terms: list[str]
    examples: list[str]  # titles
    # (rank, cosine of the centroids) of the other candidates of this discovery whose
    # centroid is at least ``near_cosine`` similar to this one's; ranks count from 1
    near: list[tuple[int, float]] = dataclasses.field(default_factory=list)

    @property
    def score(self) -> float:
        return self.size * self.separation


def tokens(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def class_tfidf(docs: Mapping[str, Sequence[str]], top: int = 8) -> dict[str, list[str]]:
    """Top terms per class: a class's term frequency (normalised by its length) times
    log(1 + mean class length / the term's frequency over all classes)."""
    counts = {
        name: Counter(w for text in texts for w in tokens(text)) for name, texts in docs.items()
    }
    total = Counter[str]()
    for c in counts.values():
        total.update(c)
    mean_len = sum(sum(c.values()) for c in counts.values()) / max(1, len(counts))
    out = {}
    for name, c in counts.items():
        length = max(1, sum(c.values()))
        scored = {
            w: (n / length) * math.log(1 + mean_len / total[w]) for w, n in c.items() if n >= 2
        }
        out[name] = [w for w, _ in sorted(scored.items(), key=lambda t: (-t[1], t[0]))[:top]]
    return out


def cluster(vectors: npt.NDArray[np.float32], *, distance: float, min_size: int) -> list[list[int]]:
    """Agglomerative clustering (average linkage, cosine distance) cut at ``distance``;
    clusters smaller than ``min_size`` are dropped. Largest first."""
    if len(vectors) < max(2, min_size):
        return []
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(
        n_clusters=None, distance_threshold=distance, metric="cosine", linkage="average"
    ).fit_predict(vectors)
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(int(lab), []).append(i)
    return sorted((g for g in groups.values() if len(g) >= min_size), key=len, reverse=True)


def discover(
    pool: Sequence[PoolItem],
    known: Mapping[str, Sequence[str]],
    *,
    embed: Embed,
    distance: float = 0.6,
    min_size: int = 8,
    min_separation: float = 0.05,
    limit: int = 10,
    near_cosine: float = 0.5,
) -> list[Candidate]:
    """Candidates from ``pool``, ranked by size × separation from ``known`` (topic → sample
    texts the model placed confidently); each lists the others within ``near_cosine``."""
    if not pool:
        return []
    vectors = embed([p.text for p in pool])
    names = sorted(known)
    centroids = (
        np.stack([_unit(embed(list(known[n])).mean(axis=0)) for n in names]) if names else None
    )
    found, centres = [], []
    groups = cluster(vectors, distance=distance, min_size=min_size)
    for group in groups:
        centre = _unit(vectors[group].mean(axis=0))
        cohesion = float((vectors[group] @ centre).mean())
        if centroids is not None:
            sims = centroids @ centre
            nearest = int(np.argmax(sims))
            separation, nearest_topic = 1.0 - float(sims[nearest]), names[nearest]
        else:
            separation, nearest_topic = 1.0, ""
        if separation < min_separation:
            continue
        members = [pool[i] for i in group]
        # examples: the members nearest the centre
        order = np.argsort(-(vectors[group] @ centre))
        centres.append(centre)
        found.append(
            Candidate(
                members=[m.article_id for m in members],
                size=len(members),
                separation=round(separation, 4),
                nearest_topic=nearest_topic,
                cohesion=round(cohesion, 4),
                none_of_these=sum(m.source == "none_of_these" for m in members),
                terms=[],
                examples=[members[int(i)].title for i in order[:5]],
            )
        )
    ranked = sorted(range(len(found)), key=lambda i: -found[i].score)[:limit]
    found = mark_near([found[i] for i in ranked], [centres[i] for i in ranked], near_cosine)
    if found:
        by_id = {p.article_id: p.text for p in pool}
        docs: dict[str, list[str]] = {
            f"c{i}": [by_id[a] for a in c.members] for i, c in enumerate(found)
        }
        docs.update({f"k:{n}": list(known[n]) for n in names})
        terms = class_tfidf(docs)
        found = [dataclasses.replace(c, terms=terms[f"c{i}"]) for i, c in enumerate(found)]
    return found


def mark_near(
    found: Sequence[Candidate], centres: Sequence[npt.NDArray[np.float32]], near_cosine: float
) -> list[Candidate]:
    """``found`` (in rank order) with ``near`` filled: for each, the ranks of the others whose
    centroid's cosine similarity to its own is at least ``near_cosine``, nearest first."""
    if not found:
        return []
    sims = np.stack(centres) @ np.stack(centres).T
    out = []
    for i, c in enumerate(found):
        near = [
            (int(j) + 1, round(float(sims[i, j]), 4))
            for j in np.argsort(-sims[i])
            if j != i and sims[i, j] >= near_cosine
        ]
        out.append(dataclasses.replace(c, near=near))
    return out


def _unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v
