#!/usr/bin/env sh
# `make test` runs a browser tier (real Chromium). Install Debian's chromium where this
# machine allows it (root with apt-get); otherwise stop before any test, saying what to run.
set -eu
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "make test: installing Debian's chromium for the browser tier (once)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "make test: the browser tier needs Chromium; run: sudo apt-get install chromium (then make test again)" >&2
exit 1
