"""The recipe a retraining of the champion runs: the champion's own, as the flow recorded it
in its metadata.json, to which the caller adds the reviewed labels.

* Settings override only where they are set: ``retrain_epochs``, ``retrain_max_rows``,
  ``retrain_quantize`` (``None``, their default, means "the champion's").
* The warm start is re-pointed at the champion (``retrain_warm_start``) when the champion was
  trained from the same base; a teacher is kept only while its registered version exists.
* A champion without a recorded recipe (a folder from before recipes were recorded) retrains
  with the default recipe below; the result says so and the caller logs and records it.
* A recipe that cannot run here is refused (:class:`RecipeRefused`), never replaced by
  another: an unreadable record, a base that is not installed, a data file that changed or
  is gone.

Example:
    >>> plan = inherit_recipe(settings, dataset="ag_news", warm_start=True)  # doctest: +SKIP
    >>> plan.recipe.base, plan.source  # doctest: +SKIP
    ('minilm', 'champion')
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal

from pipeline.core.errors import NewsflowError
from pipeline.core.settings import Settings
from retraining.errors import InputError
from retraining.recipe import Recipe, check_data_files
from retraining.train import TrainConfig

log = logging.getLogger("newsflow.retrain")
DEFAULT_RETRAIN_EPOCHS = 2  # the default recipe's epochs (the retrain_epochs default before)


class RecipeRefused(InputError):
    """The champion's recipe cannot run here; nothing is trained in its place."""


@dataclasses.dataclass(frozen=True)
class InheritedRecipe:
    """``recipe`` to train; ``source``: ``champion`` (its recorded recipe) or ``default``
    (it recorded none, or there is no champion); ``champion``: its registry version;
    ``champion_labels``: its labels; ``notes``: every change made to the recorded recipe."""

    recipe: Recipe
    source: Literal["champion", "default"]
    champion: str | None
    champion_labels: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def for_labels(self, labels: Sequence[str]) -> InheritedRecipe:
        """Without the warm start when the training rows' labels are not the champion's
        (its head cannot continue on them)."""
        if self.recipe.warm_start is None or tuple(labels) == self.champion_labels:
            return self
        return dataclasses.replace(
            self,
            recipe=dataclasses.replace(self.recipe, warm_start=None),
            notes=(
                *self.notes,
                f"no warm start: the champion's labels {list(self.champion_labels)} are not "
                f"the training labels {list(labels)}",
            ),
        )

    def describe(self) -> str:
        where = f"champion version {self.champion}" if self.champion else "no champion"
        what = "its recorded recipe" if self.source == "champion" else "the default recipe"
        return f"{what} ({where})" + (": " + "; ".join(self.notes) if self.notes else "")

    def tags(self) -> dict[str, str]:
        """MLflow run tags saying where the recipe came from and what was changed."""
        return {
            "recipe_from": f"{self.source}:{self.champion or '-'}",
            "recipe_notes": ("; ".join(self.notes) or "-")[:4000],
        }


def default_recipe(dataset: str) -> Recipe:
    """What every automatic retraining ran before recipes were recorded: the offline MiniLM
    on the dataset's default rows, two epochs."""
    return Recipe(dataset=dataset, training=TrainConfig(epochs=DEFAULT_RETRAIN_EPOCHS))


def inherit_recipe(settings: Settings, *, dataset: str, warm_start: bool) -> InheritedRecipe:
    """The champion's recipe, re-pointed and overridden as the module says, checked to run
    here (:class:`RecipeRefused` otherwise). ``dataset``: the default recipe's (a recorded
    recipe keeps its own); ``warm_start``: continue the champion's weights."""
    from pipeline.core import registry
    from pipeline.core.model_folder import read_metadata

    champion = registry.version_by_alias(settings, registry.CHAMPION)
    if champion is None:
        plan = InheritedRecipe(default_recipe(dataset), "default", None, (), ("no champion",))
        return _finish(settings, plan)
    meta = read_metadata(registry.local_copy(settings, champion.version))
    labels = tuple(meta.labels)
    if meta.recipe is None:
        log.warning(
            "champion version %s recorded no recipe: retraining with the default recipe "
            "(%s, %s rows, %d epochs)",
            champion.version,
            "minilm",
            dataset,
            DEFAULT_RETRAIN_EPOCHS,
        )
        plan = InheritedRecipe(
            default_recipe(dataset),
            "default",
            champion.version,
            labels,
            ("the champion recorded no recipe",),
        )
    else:
        try:
            recipe = Recipe.from_dict(meta.recipe)
        except InputError as exc:
            raise RecipeRefused(
                f"champion version {champion.version}'s recorded recipe is unusable: {exc}"
            ) from None
        notes = []
        if recipe.dataset != dataset:
            notes.append(f"dataset {recipe.dataset!r} as recorded (not {dataset!r})")
        plan = InheritedRecipe(recipe, "champion", champion.version, labels, tuple(notes))
    plan = _teacher(settings, plan)
    plan = _warm_start(settings, plan, meta.base_model, warm_start)
    return _finish(settings, plan)


def _warm_start(
    settings: Settings, plan: InheritedRecipe, champion_base: str, wanted: bool
) -> InheritedRecipe:
    """The warm start re-pointed at the champion, or none (another base, no logged weights)."""
    from retraining.checkpoint import base_name

    recipe, notes = plan.recipe, list(plan.notes)
    target = None
    if wanted and plan.champion is not None:
        if champion_base and base_name(champion_base) != base_name(recipe.base):
            notes.append(
                f"no warm start: the champion's base {champion_base!r} is not {recipe.base!r}"
            )
        elif not _logged_weights(settings, plan.champion):
            notes.append("no warm start: the champion's run logged no fine-tuned weights")
        else:
            target = plan.champion
    if recipe.warm_start != target:
        notes.append(f"warm start {recipe.warm_start or 'none'} -> {target or 'none'}")
    return dataclasses.replace(
        plan, recipe=dataclasses.replace(recipe, warm_start=target), notes=tuple(notes)
    )


def _logged_weights(settings: Settings, version: str) -> bool:
    """Whether the run behind registered ``version`` logged its fine-tuned weights (a folder
    registered as it is, `newsflow models register`, has none)."""
    from pipeline.core import registry

    c = registry.client(settings)
    run_id = c.get_model_version(settings.registered_model_name, version).run_id
    logged = {a.path for a in c.list_artifacts(run_id, registry.TORCH_STATE_DIR)}
    return registry.TORCH_STATE_ARTIFACT in logged


def _teacher(settings: Settings, plan: InheritedRecipe) -> InheritedRecipe:
    """The recorded teacher, while its registered version exists."""
    from pipeline.core import registry

    teacher = plan.recipe.teacher
    if teacher is None:
        return plan
    if teacher.teacher in {v.version for v in registry.list_versions(settings)}:
        return plan
    log.warning("teacher version %s no longer exists: retraining without it", teacher.teacher)
    return dataclasses.replace(
        plan,
        recipe=dataclasses.replace(plan.recipe, teacher=None),
        notes=(*plan.notes, f"no teacher: version {teacher.teacher} no longer exists"),
    )


def _finish(settings: Settings, plan: InheritedRecipe) -> InheritedRecipe:
    """Settings that are set override; then the recipe must be able to run here."""
    recipe, notes = plan.recipe, list(plan.notes)
    if settings.retrain_epochs is not None and settings.retrain_epochs != recipe.training.epochs:
        notes.append(f"epochs {recipe.training.epochs} -> {settings.retrain_epochs} (setting)")
        recipe = dataclasses.replace(
            recipe, training=dataclasses.replace(recipe.training, epochs=settings.retrain_epochs)
        )
    if settings.retrain_max_rows is not None and settings.retrain_max_rows != recipe.data.max_rows:
        notes.append(f"max rows {recipe.data.max_rows} -> {settings.retrain_max_rows} (setting)")
        recipe = dataclasses.replace(
            recipe, data=dataclasses.replace(recipe.data, max_rows=settings.retrain_max_rows)
        )
    if settings.retrain_quantize is not None and settings.retrain_quantize != recipe.quantize:
        notes.append(f"quantize {recipe.quantize} -> {settings.retrain_quantize} (setting)")
        recipe = dataclasses.replace(recipe, quantize=settings.retrain_quantize)
    check_runnable(settings, recipe)
    return dataclasses.replace(plan, recipe=recipe, notes=tuple(notes))


def check_runnable(settings: Settings, recipe: Recipe) -> None:
    """:class:`RecipeRefused` when the recipe's base cannot be found here or a data file it
    read is gone or changed."""
    from retraining.bases.resolve import resolve_base_model

    try:
        resolve_base_model(recipe.base, settings)
    except NewsflowError as exc:
        raise RecipeRefused(
            f"the recipe's base {recipe.base!r} is not available here: {exc}"
        ) from None
    try:
        check_data_files(recipe, settings.data_dir)
    except InputError as exc:
        raise RecipeRefused(str(exc)) from None
