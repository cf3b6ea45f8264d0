#!/usr/bin/env bash
# What the test suite needs beyond Python packages: Debian's Chromium (browser tests drive
# /usr/bin/chromium through Playwright, whose Node.js driver needs libatomic1) and kcat
# (the bad-input campaign sends some messages from an outside client), Prometheus and
# Alertmanager (promtool and amtool check the alert rules; the alerting test runs both
# servers). Installed with apt when missing and running as root; otherwise
# this says what to install.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
{ command -v prometheus-alertmanager && command -v amtool; } >/dev/null 2>&1 \
  || missing+=(prometheus-alertmanager)
# Playwright's bundled Node.js driver links libatomic (absent from a minimal Debian 12).
if command -v ldconfig >/dev/null 2>&1 && ! ldconfig -p | grep -q 'libatomic\.so\.1'; then
  missing+=(libatomic1)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (apt)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  # The packages enable system services; the project runs its own copies (newsflow stack up,
  # the tests), and the system Alertmanager's port 9093 is Kafka's controller port.
  for pkg in "${missing[@]}"; do
    case "$pkg" in prometheus | prometheus-alertmanager)
      if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$pkg" >/dev/null 2>&1 || true
      fi ;;
    esac
  done
else
  echo "the tests need: ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
