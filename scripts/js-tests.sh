#!/usr/bin/env bash
# The JavaScript tests, against the release binary (target/release/roomd, or
# $ROOMD_BIN): roomd.js in Node (tests/js/client.test.mjs, over the `ws`
# package) and the demo page in headless Chromium driven over the DevTools
# protocol (tests/js/browser.test.mjs). Installs what is missing: Debian's
# chromium (apt-get) and the tests' npm packages (npm ci in tests/js).
# About 15 s once installed; bounded by JS_TESTS_TIMEOUT (seconds, 300).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v node >/dev/null || { echo "js-tests: Node.js (18 or later) is needed" >&2; exit 1; }
ROOMD_BIN=${ROOMD_BIN:-target/release/roomd}
[ -x "$ROOMD_BIN" ] || cargo build --release --bin roomd
ROOMD_BIN=$(realpath "$ROOMD_BIN")
export ROOMD_BIN

if [ -z "${CHROMIUM_BIN:-}" ] && ! command -v chromium >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "js-tests: installing chromium (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

cd tests/js
npm ci --no-audit --no-fund --loglevel=error
# One file at a time: each starts its own roomd and the machine may be small.
timeout "${JS_TESTS_TIMEOUT:-300}" node --test --test-concurrency=1 --test-reporter=spec \
  client.test.mjs browser.test.mjs
