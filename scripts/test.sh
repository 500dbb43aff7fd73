#!/usr/bin/env bash
# The test suite, on a fresh machine: installs what the browser tests need
# (Debian's chromium and chromium-driver) if they are missing, then runs
# `cargo test` (extra arguments go to it). CI runs this same script.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    echo "installing chromium and chromium-driver for the browser tests" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
fi
cargo test "$@"
