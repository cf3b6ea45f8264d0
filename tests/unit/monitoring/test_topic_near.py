"""Discovery marks candidates near each other; more suggestions for a topic are picked near
its examples and at its boundary. Hand-made unit vectors stand in for MiniLM."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from monitoring.topics import discovery
from monitoring.topics.discovery import Candidate, PoolItem, discover, mark_near
from monitoring.topics.label_requests import pick


def _unit(*v: float) -> npt.NDArray[np.float32]:
    a = np.array(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def _candidate(size: int) -> Candidate:
    return Candidate([], size, 0.5, "World", 0.8, 0, [], [])


def test_mark_near_pairs_by_centroid_cosine() -> None:
    centres = [_unit(1, 0, 0), _unit(1, 0.3, 0), _unit(0, 0, 1)]
    marked = mark_near([_candidate(9), _candidate(8), _candidate(7)], centres, 0.9)
    assert [c.near for c in marked] == [[(2, 0.9578)], [(1, 0.9578)], []]
    assert mark_near([], [], 0.5) == []


def test_discover_marks_one_kind_split_in_two_clusters(monkeypatch: pytest.MonkeyPatch) -> None:
    # film and music: two tight clusters close to each other; sport: far from both
    axes = {"film": _unit(1, 0.2, 0, 0), "music": _unit(1, -0.2, 0, 0), "sport": _unit(0, 0, 1, 0)}
    pool = [
        PoolItem(f"{k}-{i}", f"{k} {i}", f"{k} {i}", "none_of_these")
        for k in axes
        for i in range(8)
    ]

    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        rng = np.random.default_rng(0)
        rows = [axes[t.split()[0]] + rng.normal(0, 0.01, 4).astype(np.float32) for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)

    # the clusters as average linkage finds them (sklearn's import alone takes seconds)
    groups = [list(range(k * 8, k * 8 + 8)) for k in range(3)]
    monkeypatch.setattr(discovery, "cluster", lambda vectors, distance, min_size: groups)
    found = discover(pool, {}, embed=embed, distance=0.05, min_size=4, near_cosine=0.9)
    kinds = [c.members[0].split("-")[0] for c in found]
    assert sorted(kinds) == ["film", "music", "sport"]
    rank = {k: i + 1 for i, k in enumerate(kinds)}
    near = {k: [r for r, _ in c.near] for k, c in zip(kinds, found, strict=True)}
    assert near["film"] == [rank["music"]] and near["music"] == [rank["film"]]
    assert near["sport"] == []
    json.dumps([c.near for c in found])  # plain numbers: they are stored as JSON
    assert all(type(r) is int and type(cos) is float for c in found for r, cos in c.near)


def test_pick_takes_the_nearest_and_a_few_at_the_boundary() -> None:
    examples = np.stack([_unit(1, 0), _unit(1, 0.5)])  # the least typical at cosine ~0.95
    angles = np.linspace(0, np.pi / 2, 11)  # pool from on-topic (0) to unrelated (90 degrees)
    pool = np.stack([_unit(float(np.cos(a)), float(np.sin(a))) for a in angles])
    chosen = pick(examples, pool, 5, boundary_share=0.2)
    assert len(chosen) == len(set(chosen)) == 5
    proto = examples.mean(axis=0) / np.linalg.norm(examples.mean(axis=0))
    sims = pool @ proto
    assert chosen[:4] == [int(i) for i in np.argsort(-sims)[:4]]  # the nearest first
    edge = float((examples @ proto).min())
    rest = [i for i in range(11) if i not in chosen[:4]]
    assert chosen[4] == min(rest, key=lambda i: abs(sims[i] - edge))  # then the boundary
    assert pick(examples, pool, 0) == [] and pick(examples, pool[:0], 3) == []
