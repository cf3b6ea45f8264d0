#!/usr/bin/env bash
# What the test suite needs beyond Python packages: Debian's Chromium (browser tests drive
# /usr/bin/chromium through Playwright, whose Node.js driver needs libatomic1) and kcat
# (the bad-input campaign sends some messages from an outside client). Installed with apt when missing and running as root; otherwise
# this says what to install.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
# Playwright's bundled Node.js driver links libatomic (absent from a minimal Debian 12).
if command -v ldconfig >/dev/null 2>&1 && ! ldconfig -p | grep -q 'libatomic\.so\.1'; then
  missing+=(libatomic1)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (apt)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
else
  echo "the tests need: ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
