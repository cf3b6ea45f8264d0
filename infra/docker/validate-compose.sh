#!/usr/bin/env bash
# Check docker-compose.yml with a real Docker Compose (v5, the `docker compose` plugin, built on
# compose-go) and no Docker engine: `config` parses, interpolates, normalises and checks the
# file against the Compose schema, for the default services and for the `gpu` profile.
# Images are not built and no container starts.
#
# The validator is built once from the Go module proxy into $COMPOSE_CHECK_DIR (default
# /opt/compose-check, outside the repository; nothing is added to the project). It needs Go
# (with GOTOOLCHAIN=auto an older Go fetches the toolchain the module asks for) and about
# 400 MB of module cache; later runs reuse the binary. To use a Compose you already have:
#   COMPOSE="docker compose" infra/docker/validate-compose.sh
set -euo pipefail

COMPOSE_VERSION="${COMPOSE_VERSION:-v5.6.0}"
CHECK_DIR="${COMPOSE_CHECK_DIR:-/opt/compose-check}"
cd "$(dirname "$0")/../.."

install_compose() {
  local bin="$CHECK_DIR/bin/docker-compose"
  if [[ -x "$bin" ]] && "$bin" version 2>/dev/null | grep -qF "$COMPOSE_VERSION"; then
    echo "$bin"
    return
  fi
  command -v go >/dev/null || { echo "validate-compose: needs Go (or set COMPOSE)" >&2; exit 2; }
  local module="github.com/docker/compose/${COMPOSE_VERSION%%.*}"
  echo "validate-compose: building $module@$COMPOSE_VERSION (a few minutes, once)" >&2
  mkdir -p "$CHECK_DIR/bin"
  export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
  # `go install module@version` refuses this module (its go.mod has exclude directives), so
  # build it as the main module from the copy that `go mod download` fetched.
  local dir
  dir="$(go mod download -json "$module@$COMPOSE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || { echo "validate-compose: download failed" >&2; exit 2; }
  rm -rf "$CHECK_DIR/src"
  cp -r "$dir" "$CHECK_DIR/src"
  chmod -R u+w "$CHECK_DIR/src"
  (cd "$CHECK_DIR/src" && go build -buildvcs=false -trimpath \
    -ldflags "-s -w -X $module/internal.Version=$COMPOSE_VERSION" -o "$bin.tmp" ./cmd) >&2
  mv "$bin.tmp" "$bin"
  rm -rf "$CHECK_DIR/src"
  echo "$bin"
}

if [[ -n "${COMPOSE:-}" ]]; then
  read -r -a compose <<<"$COMPOSE"
else
  compose=("$(install_compose)")
fi
"${compose[@]}" version

# Throwaway interpolation values: dummies only, never a real secret. (A real .env beside the
# compose file is still read by env_file; --quiet keeps its values off the screen.)
env_file="$(mktemp)"
trap 'rm -f "$env_file"' EXIT
cat >"$env_file" <<'EOF'
NEWSFLOW_PG_USER=newsflow
NEWSFLOW_PG_PASSWORD=dummy-password-for-config
NEWSFLOW_PG_DATABASE=newsflow
EOF
c=("${compose[@]}" --env-file "$env_file" -f docker-compose.yml)

fail() { echo "validate-compose: $*" >&2; exit 1; }

"${c[@]}" config --quiet || fail "config (default services) failed"
"${c[@]}" --profile gpu config --quiet || fail "config --profile gpu failed"

services="$("${c[@]}" config --services | sort | tr '\n' ' ')"
gpu_services="$("${c[@]}" --profile gpu config --services | sort | tr '\n' ' ')"
profiles="$("${c[@]}" config --profiles | tr '\n' ' ')"
echo "services: $services"
echo "services with --profile gpu: $gpu_services"
echo "profiles: $profiles"
[[ " $services " != *" worker-gpu "* ]] || fail "worker-gpu starts without --profile gpu"
[[ " $gpu_services " == *" worker-gpu "* ]] || fail "--profile gpu has no worker-gpu"
[[ " $profiles " == *" gpu "* ]] || fail "no gpu profile"

# The normalised model, as the engine would get it: the GPU reservation survives, and no
# service serves a fixed model folder.
check_model='
import json, sys
model = json.load(sys.stdin)
services = model["services"]
devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), devices
for name, svc in services.items():
    assert "NEWSFLOW_MODEL_DIR" not in (svc.get("environment") or {}), name
assert "models" not in model.get("volumes", {}), "a models volume is back"
print("normalised model: gpu reservation kept, no NEWSFLOW_MODEL_DIR, no models volume")
'
"${c[@]}" --profile gpu config --format json | python3 -c "$check_model" \
  || fail "normalised model check failed"

# A missing secret must stop Compose, not start Postgres with an empty password.
if "${compose[@]}" --env-file /dev/null -f docker-compose.yml config --quiet 2>/dev/null; then
  if [[ -z "${NEWSFLOW_PG_PASSWORD:-}" ]]; then
    fail "config passed without NEWSFLOW_PG_PASSWORD"
  fi
fi
echo "validate-compose: ok"
