"""SQL on the product's tables lives in ``pipeline/core/db/`` (docs/architecture.md, "Where a
change goes"). Counted with ``ast``, not grep: every call of SQLAlchemy's ``text`` (imported
from ``sqlalchemy``, ``sqlalchemy.sql`` or ``sqlalchemy.sql.expression`` under any name, or
reached as an attribute of an imported ``sqlalchemy`` module) in ``pipeline/``,
``monitoring/`` and ``retraining/`` outside ``pipeline/core/db/``. What may stay outside:
proof tools, seed data and health checks, each file named below with its reason."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[5]
PACKAGES = ("pipeline", "monitoring", "retraining")
HOME = Path("pipeline/core/db")
LIMIT = 26  # issue 25's target
TEXT_MODULES = ("sqlalchemy", "sqlalchemy.sql", "sqlalchemy.sql.expression")

ALLOWED = {
    "monitoring/web/routes/health.py": "health check: SELECT 1",
    "monitoring/web/seed.py": "seed data for a fresh install's demo queue",
    "pipeline/proof/bench.py": "proof tool: the stream benchmark's drain and latency reads",
    "pipeline/proof/faults.py": "proof tool: the fault suite's stored-article count",
    "pipeline/proof/fuzz.py": "proof tool: the fuzz campaign's canaries and positions",
    "pipeline/proof/replay_counts.py": "proof tool: what a replayed day is scored on",
    "pipeline/proof/sink_bench.py": "proof tool: the sink benchmark's row counts",
}


def text_calls(source: str) -> int:
    """Calls of sqlalchemy's ``text`` in one module's source."""
    tree = ast.parse(source)
    names: set[str] = set()  # local names of the function
    modules: set[str] = set()  # local names of modules that carry it as an attribute
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in TEXT_MODULES:
            names.update(a.asname or a.name for a in node.names if a.name == "text")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in TEXT_MODULES:
                    modules.add(alias.asname or alias.name.split(".")[0])
    count = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in names:
            count += 1
        elif isinstance(func, ast.Attribute) and func.attr == "text":
            base = func.value
            while isinstance(base, ast.Attribute):  # sqlalchemy.sql.text
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                count += 1
    return count


def outside_home() -> Counter[str]:
    found: Counter[str] = Counter()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.is_relative_to(HOME):
                continue
            n = text_calls(path.read_text(encoding="utf-8"))
            if n:
                found[rel.as_posix()] = n
    return found


def _listing(found: Counter[str]) -> str:
    return "\n".join(f"  {n:3d}  {name}" for name, n in sorted(found.items()))


def test_the_counter_sees_every_spelling() -> None:
    source = (
        "import sqlalchemy as sa\nimport sqlalchemy.sql\n"
        "from sqlalchemy import text\nfrom sqlalchemy.sql import text as sql_text\n"
        "text('a'); sql_text('b'); sa.text('c'); sqlalchemy.sql.text('d')\n"
        "Path('x').read_text(); self.text('e')\n"
    )
    assert text_calls(source) == 4


def test_sql_outside_pipeline_core_db_is_only_proofs_seed_data_and_health_checks() -> None:
    found = outside_home()
    total = sum(found.values())
    stray = {name: n for name, n in found.items() if name not in ALLOWED}
    assert not stray, (
        "text() SQL outside pipeline/core/db/ in files not allowed to hold it (move it into "
        f"the table family's module there):\n{_listing(Counter(stray))}"
    )
    assert total <= LIMIT, (
        f"{total} text() statements outside pipeline/core/db/ (at most {LIMIT}):\n{_listing(found)}"
    )
