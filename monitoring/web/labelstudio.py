"""Label Studio interchange: review items out as Label Studio JSON tasks (with the model's
pick as a pre-annotation), Label Studio annotations back in as review labels.

Task format: ``{"id", "data": {"text", "title", "review_item_id", ...}, "predictions":
[{"model_version", "score", "result": [choices]}]}``; the labelling config that goes with
it (:func:`label_config`) has one ``Choices`` control named ``topic`` over ``text``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from sqlalchemy import Engine

from pipeline.core.db import review_interchange
from pipeline.core.records import NONE_LABEL

FROM_NAME, TO_NAME = "topic", "text"


def label_config(labels: Sequence[str]) -> str:
    """The Label Studio labelling interface for these topics."""
    choices = "\n".join(f"    <Choice value={quoteattr(t)}/>" for t in [*labels, NONE_LABEL])
    return (
        "<View>\n"
        f'  <Text name="{TO_NAME}" value="$text"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def export_tasks(engine: Engine, *, status: str = "pending", limit: int = 10_000) -> list[Any]:
    items = review_interchange.select_items_for_export(engine, status=status, limit=limit)
    return [
        {
            "id": r.review_item_id,
            "data": {
                "text": f"{r.title}\n\n{r.body}".strip(),
                "title": r.title,
                "article_id": r.article_id,
                "review_item_id": r.review_item_id,
                "round": r.round,
                "reason": r.reason,
            },
            "predictions": [
                {
                    "model_version": r.model_version,
                    "score": r.confidence,
                    "result": [
                        {
                            "from_name": FROM_NAME,
                            "to_name": TO_NAME,
                            "type": "choices",
                            "value": {"choices": [r.topic]},
                        }
                    ],
                }
            ],
        }
        for r in items
    ]


@dataclasses.dataclass
class ImportReport:
    applied: int = 0
    rejected: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (task, why)


def _choice(task: dict[str, Any]) -> tuple[str | None, str]:
    """(label, annotator) from the last annotation that was not cancelled."""
    annotations = task.get("annotations") or task.get("completions") or []
    if not isinstance(annotations, list):
        return None, ""
    for ann in reversed(annotations):
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        who = ann.get("completed_by", "")
        if isinstance(who, dict):
            who = who.get("email") or who.get("id") or ""
        for res in ann.get("result") or []:
            if not isinstance(res, dict) or res.get("from_name") != FROM_NAME:
                continue
            choices = (res.get("value") or {}).get("choices") or []
            if isinstance(choices, list) and choices and isinstance(choices[0], str):
                return choices[0], str(who)
    return None, ""


def import_annotations(engine: Engine, tasks: Any) -> ImportReport:
    """Apply annotations to pending review items. Each task that cannot be applied is
    reported with its reason; nothing is applied twice."""
    report = ImportReport()
    if not isinstance(tasks, list):
        report.rejected.append(("file", "expected a JSON list of Label Studio tasks"))
        return report
    for n, task in enumerate(tasks):
        ref = f"task #{n}"
        if not isinstance(task, dict):
            report.rejected.append((ref, "not a JSON object"))
            continue
        raw = task.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        item = data.get("review_item_id", task.get("id"))
        if isinstance(item, bool) or not isinstance(item, int):
            report.rejected.append((ref, "no integer review_item_id in data (or id)"))
            continue
        ref = f"review item {item}"
        label, who = _choice(task)
        if label is None:
            report.rejected.append((ref, f"no '{FROM_NAME}' choice in its annotations"))
            continue
        with engine.begin() as conn:
            found = review_interchange.lock_item_for_label(conn, review_item_id=item)
            if found is None:
                report.rejected.append((ref, "no such review item"))
                continue
            if found.status != "pending":
                report.rejected.append((ref, f"already {found.status}"))
                continue
            if label != NONE_LABEL and label not in found.allowed_labels:
                report.rejected.append((ref, f"label {label!r} is not a topic of the model"))
                continue
            review_interchange.record_external_label(
                conn,
                review_item_id=item,
                label=label,
                reviewer=f"labelstudio:{who or 'unknown'}"[:128],
            )
            report.applied += 1
    return report
