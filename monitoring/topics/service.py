"""The topic jobs the CLI, the web app and the scheduler run: discover candidates from what
is in PostgreSQL, and retrain once every onboarding topic has its labels."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from monitoring.topics import onboarding
from monitoring.topics.discovery import Embed, discover
from pipeline.core.settings import Settings
from retraining.expand import ExpandOutcome

if TYPE_CHECKING:
    from monitoring.decision import RetrainRequest
    from monitoring.retrain import RetrainOutcome
    from monitoring.topics.plan import RetrainPlan

log = logging.getLogger(__name__)


def champion_labels(settings: Settings) -> tuple[str | None, list[str]]:
    """(model version, labels) of the champion; (None, []) without one."""
    from pipeline.core import registry
    from pipeline.core.model_folder import read_metadata

    info = registry.version_by_alias(settings, registry.CHAMPION)
    if info is None:
        return None, []
    meta = read_metadata(registry.local_copy(settings, info.version))
    return meta.version, list(meta.labels)


def run_discovery(
    settings: Settings, engine: Engine, *, embed: Embed | None = None
) -> list[onboarding.StoredCandidate]:
    """Cluster what the champion could not place; store and return the ranked candidates."""
    if embed is None:
        from monitoring.topics.embed import embed_texts

        embed = embed_texts
    version, _ = champion_labels(settings)
    pool = onboarding.pool(engine, model_version=version, low_confidence=settings.topic_pool_size)
    known = onboarding.known_samples(engine, model_version=version)
    found = discover(
        pool,
        known,
        embed=embed,
        distance=settings.topic_cluster_distance,
        min_size=settings.topic_min_cluster,
        near_cosine=settings.topic_near_cosine,
    )
    onboarding.save_discovery(engine, found, model_version=version)
    return onboarding.candidates(engine)


def ready_topics(settings: Settings, engine: Engine) -> list[str]:
    """The topics the next retraining adds: onboarding topics with all their reviewed
    examples (``topic_min_labels``, or more when the new-topic gate asked for more), and the
    parts of a split whose every part has them (the others keep collecting)."""
    from monitoring.topics.plan import build_plan

    return list(build_plan(engine, min_labels=settings.topic_min_labels).new_topics)


def retrain_if_ready(
    settings: Settings,
    engine: Engine,
    *,
    max_steps: int | None = None,
    quantize: bool | None = None,
) -> ExpandOutcome | None:
    """Retrain with every onboarding topic and split that has the reviewed examples it needs
    (:func:`monitoring.topics.plan.build_plan`; the others keep collecting), and without the
    topics asked to be removed or merged; None when there is nothing to change yet. Each new
    topic is gated on its own: when some are promoted and others are not (more labels needed,
    or refused), the retraining runs once more without the others
    (:meth:`~monitoring.topics.plan.RetrainPlan.narrowed`), so they do not hold it back. The
    champion's recipe is kept (:mod:`retraining.retrain_recipe`; ``max_steps``,
    ``quantize``: overrides for smoke runs and tests); one that cannot run here raises
    :class:`RecipeRefused`."""
    import dataclasses

    from monitoring.topics.plan import build_plan

    plan = build_plan(engine, min_labels=settings.topic_min_labels)
    if plan.empty:
        return None
    outcome = _retrain_plan(settings, engine, plan, max_steps=max_steps, quantize=quantize)
    old_refused = (outcome.old_classes or {}).get("decision") == "refuse"
    narrower = None
    if outcome.status in ("needs_labels", "rejected") and outcome.gate and not old_refused:
        narrower = plan.narrowed({g["topic"]: g["decision"] for g in outcome.gate})
    if narrower is not None:
        first = outcome
        left = [g for g in first.gate if g["topic"] not in narrower.new_topics]
        log.info("retraining without %s (%s)", [g["topic"] for g in left], first.status)
        outcome = _retrain_plan(settings, engine, narrower, max_steps=max_steps, quantize=quantize)
        outcome = dataclasses.replace(
            outcome,
            reason=f"first without {', '.join(g['topic'] for g in left)} ({first.reason}); "
            f"then: {outcome.reason}",
            gate=[*left, *outcome.gate],
        )
        plan = narrower
    if outcome.status == "promoted" and outcome.version:
        onboarding.mark_active(engine, plan.new_topics, version=outcome.version)
        onboarding.mark_retired(engine, list(plan.retire), version=outcome.version)
    if any(g.get("decision") != "promote" for g in outcome.gate):
        from monitoring.topics.label_requests import top_up  # the gate asked: suggest more

        try:
            top_up(settings, engine)
        except Exception:  # the scheduler tries again; the outcome stands
            log.exception("queueing more suggestions after the gate failed")
    return outcome


def _retrain_plan(
    settings: Settings,
    engine: Engine,
    plan: RetrainPlan,
    *,
    max_steps: int | None,
    quantize: bool | None,
) -> ExpandOutcome:
    """One retraining of the champion's recipe with ``plan``'s topics (trained and gated)."""
    import dataclasses

    from retraining.expand import retrain_expanded
    from retraining.flow import load_training_data
    from retraining.retrain_recipe import inherit_recipe

    recipe_plan = inherit_recipe(settings, dataset=settings.retrain_dataset, warm_start=False)
    recipe = recipe_plan.recipe
    if max_steps is not None:
        recipe = dataclasses.replace(
            recipe, training=dataclasses.replace(recipe.training, max_steps=max_steps)
        )
    if quantize is not None:
        recipe = dataclasses.replace(recipe, quantize=quantize)
    base = load_training_data(
        settings, recipe.dataset, choice=recipe.data, validation=recipe.validation
    )
    return retrain_expanded(
        settings,
        engine=engine,
        new_topics=list(plan.new_topics),
        retire=plan.retire,
        base_rows=[*base.train, *base.validation],
        test_rows=base.test,
        recipe=recipe,
        recipe_tags=recipe_plan.tags(),
        min_labels=settings.topic_min_labels,
        min_f1=settings.topic_min_f1,
        base_per_class=settings.topic_base_per_class,
    )


def onboarding_request(settings: Settings, engine: Engine) -> RetrainRequest | None:
    """A retraining request once an onboarding topic or a split has its reviewed examples,
    or a topic is to be removed or merged."""
    from monitoring.decision import RetrainRequest
    from monitoring.topics.plan import build_plan

    plan = build_plan(engine, min_labels=settings.topic_min_labels)
    if plan.empty:
        return None
    return RetrainRequest(reason=plan.reason(), trigger="new_topic", requested_by="topics")


def onboarding_train(
    settings: Settings, *, engine: Engine, quantize: bool | None = None, **kwargs: object
) -> RetrainOutcome:
    """The training step the scheduler runs for a new-topic request (``maybe_retrain``'s
    ``train``: its guards and records apply). ``quantize=False``: fp32 only (tests with
    briefly trained models, too unsure for the int8 parity gate); None: the champion's
    recipe says. A recipe that cannot run here is refused (``retrain_refused``)."""
    from monitoring.retrain import RetrainOutcome, refuse_retraining
    from retraining.retrain_recipe import RecipeRefused

    try:
        outcome = retrain_if_ready(settings, engine, quantize=quantize)
    except RecipeRefused as exc:
        run = kwargs.get("drift_run_id")
        return refuse_retraining(settings, engine, run if isinstance(run, int) else None, str(exc))
    if outcome is None:
        return RetrainOutcome("skipped", "the onboarding topics no longer have all their labels")
    if outcome.status == "promoted":
        return RetrainOutcome("promoted", outcome.reason, outcome.version)
    if outcome.status in ("rejected", "needs_labels"):  # needs_labels: not promoted, waits
        return RetrainOutcome("rejected", outcome.reason, outcome.version)
    return RetrainOutcome("failed", outcome.reason, outcome.version)
