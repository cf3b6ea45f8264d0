"""The parity gate's texts: spread over the whole test split, not its first rows."""

from __future__ import annotations

from retraining.export import PARITY_TEXTS, parity_sample


def test_a_class_grouped_split_puts_every_class_under_the_gate() -> None:
    # 20 Newsgroups' bydate test file: 7,532 posts, one newsgroup after another
    grouped = [f"group{g:02d} post {i}" for g in range(20) for i in range(376)]
    sample = parity_sample(grouped)
    assert len(sample) == PARITY_TEXTS == len(set(sample))
    groups = {t.split()[0] for t in sample}
    assert len(groups) == 20  # the first 300 rows would be group00 only
    assert {t.split()[0] for t in grouped[:PARITY_TEXTS]} == {"group00"}
    assert sample == sorted(sample, key=grouped.index)  # in the split's order


def test_the_draw_is_seeded_and_small_splits_are_kept_whole() -> None:
    texts = [f"t{i}" for i in range(1000)]
    assert parity_sample(texts, seed=5) == parity_sample(texts, seed=5)
    assert parity_sample(texts, seed=5) != parity_sample(texts, seed=6)
    assert parity_sample(texts[:40]) == texts[:40]
    assert parity_sample(texts[:300]) == texts[:300]
    assert parity_sample([], 10) == []
    assert len(parity_sample(texts, 10)) == 10


def test_an_empty_gate_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="at least 1 text"):
        parity_sample(["a", "b"], 0)
