"""The replay's timeline as a PNG (matplotlib, part of the ``monitor`` extra): per simulated
day true, estimated and reviewed accuracy with the scripted events and the retrainings
marked; alerts opened by kind; review load; table sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# One colour per retraining outcome: every marker of an outcome matches its legend entry.
RETRAINING_COLOURS = {
    "promoted": "tab:green",
    "rejected": "tab:red",
    "failed": "darkred",
    "refused": "tab:purple",
    "cooldown": "tab:gray",
    "capped": "tab:brown",
    "busy": "tab:olive",
    "skipped": "tab:olive",
}


def write_timeline(replay: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    days = replay["days"]
    x = [d["day"] + 1 for d in days]
    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True)
    acc, alerts, reviews, tables = axes

    for key, label in (
        ("true_accuracy", "true accuracy (known topics)"),
        ("estimated_accuracy", "estimated (mean confidence)"),
        ("reviewed_accuracy", "reviewed (uniform slice)"),
    ):
        acc.plot(x, [d[key] for d in days], marker="o", markersize=3, label=label)
    for event in replay["script"]:
        acc.axvline(event["day"] + 1, color="grey", linestyle="--", linewidth=1)
        acc.annotate(event["name"], (event["day"] + 1, 1.0), rotation=90, fontsize=8, va="top")
    for d in days:
        for r in d["retrainings"]:
            status = r["status"]
            acc.scatter(
                [d["day"] + 1],
                [0.02],
                marker="^",
                s=60,
                color=RETRAINING_COLOURS.get(status, "black"),
                label=f"retraining {status}",
            )
    handles, labels = acc.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    acc.legend(unique.values(), unique.keys(), fontsize=8, loc="lower left")
    acc.set_ylim(0, 1.05)
    acc.set_ylabel("accuracy")
    title = replay["scale"]
    acc.set_title(
        f"newsflow replay: {title['days']} days, {title['articles_per_day']} articles/day, "
        f"{title['checks_per_day']} checks/day"
    )

    kinds = sorted({k for d in days for k in d["alerts_opened"]})
    bottom = [0] * len(days)
    for kind in kinds:
        counts = [d["alerts_opened"].get(kind, 0) for d in days]
        alerts.bar(x, counts, bottom=bottom, label=kind)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    alerts.set_ylabel("alerts opened")
    if kinds:
        alerts.legend(fontsize=8)

    reviews.bar(x, [d["review"]["labelled"] for d in days], label="labelled")
    reviews.plot(x, [d["review"]["pending"] for d in days], color="black", label="pending")
    reviews.plot(x, [d["review"]["expired"] for d in days], color="red", label="expired")
    reviews.set_ylabel("review items")
    reviews.legend(fontsize=8)

    for key in ("articles_rows", "predictions_rows", "review_items_rows"):
        tables.plot(x, [d["tables"][key] for d in days], label=key)
    tables.set_ylabel("rows")
    tables.set_xlabel("simulated day")
    tables.legend(fontsize=8)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
