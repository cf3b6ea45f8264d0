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
    """Onboarding topics with all their reviewed examples: ``topic_min_labels``, or more when
    the new-topic gate asked for more (the others keep collecting)."""
    return [
        t
        for t in onboarding.onboarding_topics(engine)
        if onboarding.labelled_count(engine, t)
        >= onboarding.labels_required(engine, t, min_labels=settings.topic_min_labels)
    ]


def retrain_if_ready(
    settings: Settings,
    engine: Engine,
    *,
    max_steps: int | None = None,
    quantize: bool | None = None,
) -> ExpandOutcome | None:
    """Retrain with the onboarding topics that have the reviewed examples they need
    (:func:`ready_topics`; the others keep collecting), and without the topics asked to be
    removed or merged; None when there is nothing to change yet. The champion's recipe is kept
    (:mod:`retraining.retrain_recipe`; ``max_steps``, ``quantize``: overrides for smoke runs
    and tests); one that cannot run here raises :class:`RecipeRefused`."""
    import dataclasses

    from retraining.expand import retrain_expanded
    from retraining.flow import load_training_data
    from retraining.retrain_recipe import inherit_recipe

    topics = ready_topics(settings, engine)
    retire = onboarding.pending_changes(engine)
    if not topics and not retire:
        return None
    plan = inherit_recipe(settings, dataset=settings.retrain_dataset, warm_start=False)
    recipe = plan.recipe
    if max_steps is not None:
        recipe = dataclasses.replace(
            recipe, training=dataclasses.replace(recipe.training, max_steps=max_steps)
        )
    if quantize is not None:
        recipe = dataclasses.replace(recipe, quantize=quantize)
    base = load_training_data(
        settings, recipe.dataset, choice=recipe.data, validation=recipe.validation
    )
    outcome = retrain_expanded(
        settings,
        engine=engine,
        new_topics=topics,
        retire=retire,
        base_rows=[*base.train, *base.validation],
        test_rows=base.test,
        recipe=recipe,
        recipe_tags=plan.tags(),
        min_labels=settings.topic_min_labels,
        min_f1=settings.topic_min_f1,
        base_per_class=settings.topic_base_per_class,
    )
    if outcome.status == "promoted" and outcome.version:
        onboarding.mark_active(engine, topics, version=outcome.version)
        onboarding.mark_retired(engine, list(retire), version=outcome.version)
    elif outcome.gate:  # the gate asked for labels (or refused): suggest more at once
        from monitoring.topics.label_requests import top_up

        try:
            top_up(settings, engine)
        except Exception:  # the scheduler tries again; the outcome stands
            log.exception("queueing more suggestions after the gate failed")
    return outcome


def onboarding_request(settings: Settings, engine: Engine) -> RetrainRequest | None:
    """A retraining request once every onboarding topic has its reviewed examples, or a
    topic is to be removed or merged."""
    from monitoring.decision import RetrainRequest

    topics = ready_topics(settings, engine)
    retire = onboarding.pending_changes(engine)
    if not topics and not retire:
        return None
    parts = []
    if topics:
        parts.append("new topics with the reviewed examples they need: " + ", ".join(topics))
    if retire:
        parts.append(
            "topics to "
            + ", ".join(f"merge {k} into {v}" if v else f"remove {k}" for k, v in retire.items())
        )
    return RetrainRequest(reason="; ".join(parts), trigger="new_topic", requested_by="topics")


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
