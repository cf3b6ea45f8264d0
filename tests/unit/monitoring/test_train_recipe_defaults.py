"""`newsflow train`'s default recipe is the best measured for CPU serving (AG News union rows,
2 epochs); `--quick` is the former default (the 5,557-row sample, 3 epochs); options given
explicitly win over both, and datasets without a union read their own rows."""

from __future__ import annotations

import pytest

from monitoring.cli.train import TrainOptions, recipe_defaults


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (TrainOptions(), ("union", 2)),
        (TrainOptions(quick=True), ("sample", 3)),
        (TrainOptions(quick=True, epochs=1), ("sample", 1)),
        (TrainOptions(train_source="sample"), ("sample", 2)),
        (TrainOptions(quick=True, train_source="union"), ("union", 3)),
        (TrainOptions(dataset="20newsgroups"), ("sample", 2)),
        (TrainOptions(dataset="rows.csv", quick=True), ("sample", 3)),
    ],
)
def test_the_recipe_a_train_command_runs(options: TrainOptions, expected: tuple[str, int]) -> None:
    assert recipe_defaults(options) == expected
