#!/usr/bin/env bash
# The whole test suite in two parts that run at the same time (`make test` calls this):
#
# - the `serial` tests stop and restart Kafka or PostgreSQL, or time latencies. They run one
#   after another against a second, private stack (Kafka + PostgreSQL on their own ports, data
#   under $SERIAL_HOME), so their outages never reach the other tests. They keep normal CPU
#   priority: their timings are what they check.
# - every other test runs on TEST_WORKERS pytest-xdist processes against the stack that
#   `make stack-up` started, at lower CPU priority (`nice`), so it takes what the serial part
#   leaves: that part mostly waits on outages and restarts.
#
# Both parts always run to the end; the script fails when either failed. The serial part's
# output is printed after the parallel part's (it is kept in $SERIAL_LOG meanwhile).
set -uo pipefail
cd "$(dirname "$0")/.."

TEST_WORKERS="${TEST_WORKERS:-2}"
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider)
SERIAL_HOME="${NEWSFLOW_SERIAL_HOME:-${NEWSFLOW_HOME:-$HOME/.local/share/newsflow}-serial}"
SERIAL_LOG="${SERIAL_HOME}/serial-tests.log"
mkdir -p "$SERIAL_HOME"
# PostgreSQL runs as its own user, which cannot enter root's home: as root the cluster goes
# beside the main one under /var/lib/newsflow, as the settings' default does.
if [ -n "${NEWSFLOW_SERIAL_PG_DIR:-}" ]; then
  SERIAL_PG_DIR="$NEWSFLOW_SERIAL_PG_DIR"
elif [ -n "${NEWSFLOW_PG_DIR:-}" ]; then
  SERIAL_PG_DIR="${NEWSFLOW_PG_DIR%/}-serial"
elif [ "$(id -u)" = 0 ]; then
  SERIAL_PG_DIR=/var/lib/newsflow/postgres-serial
else
  SERIAL_PG_DIR="$SERIAL_HOME/postgres"
fi

# The private stack: everything the serial tests read from settings points at it.
serial_env=(
  NEWSFLOW_HOME="$SERIAL_HOME"
  NEWSFLOW_PG_DIR="$SERIAL_PG_DIR"
  NEWSFLOW_KAFKA_PORT="${NEWSFLOW_SERIAL_KAFKA_PORT:-29092}"
  NEWSFLOW_KAFKA_CONTROLLER_PORT="${NEWSFLOW_SERIAL_KAFKA_CONTROLLER_PORT:-29093}"
  NEWSFLOW_PG_PORT="${NEWSFLOW_SERIAL_PG_PORT:-55433}"
  NEWSFLOW_MLFLOW_SERVER=false
  NEWSFLOW_PROMETHEUS_ENABLED=false
)

serial_part() {
  echo "== serial part: private stack on Kafka ${serial_env[2]#*=}, PostgreSQL ${serial_env[4]#*=}"
  env "${serial_env[@]}" .venv/bin/newsflow stack up || return 1
  env "${serial_env[@]}" "${PYTEST[@]}" -m serial --durations=10 --basetemp "$SERIAL_HOME/pytest"
  local rc=$?
  env "${serial_env[@]}" .venv/bin/newsflow stack down >/dev/null 2>&1 || true
  return $rc
}

started=$(date +%s)
serial_part >"$SERIAL_LOG" 2>&1 &
serial_pid=$!
echo "serial tests started in the background (log: $SERIAL_LOG)"

nice -n 10 "${PYTEST[@]}" -m "not serial" -n "$TEST_WORKERS" --dist loadgroup --durations=25
parallel_rc=$?
echo "== parallel part ended (rc=$parallel_rc) after $(($(date +%s) - started)) s; waiting for the serial part"

wait "$serial_pid"
serial_rc=$?
cat "$SERIAL_LOG"
echo "== serial part ended (rc=$serial_rc); whole suite $(($(date +%s) - started)) s"
[ "$parallel_rc" -eq 0 ] && [ "$serial_rc" -eq 0 ]
