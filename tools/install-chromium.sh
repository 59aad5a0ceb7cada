#!/usr/bin/env bash
# Install Debian's chromium for tests/docs/test_render.py (headless, no network needed at run
# time; fonts-liberation so that Mermaid can measure its labels). No-op when chromium is
# already installed. Needs root or sudo and access to the Debian mirror.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation
chromium --version
