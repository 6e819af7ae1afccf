#!/bin/sh
# Install Chromium (Debian package `chromium`) for the Space's headless screenshot test, tests/test_spaces_demo.py.
# Idempotent: does nothing when $CHROMIUM (default /usr/bin/chromium) is already there. Never fails the caller:
# without Chromium the screenshot test is skipped with a reason, so a machine without apt or root still runs the rest.
set -u
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: no apt-get here; install Chromium at $CHROMIUM yourself (the screenshot test is skipped)." >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install_chromium.sh: need root (or passwordless sudo) for apt-get; the screenshot test is skipped." >&2
    exit 0
fi
echo "install_chromium.sh: installing Chromium with apt-get (once)..." >&2
# Update the package lists only if apt does not know the package yet (a fresh container has empty lists).
if ! apt-cache show chromium >/dev/null 2>&1; then
    $SUDO apt-get update -q >/dev/null || echo "install_chromium.sh: apt-get update failed." >&2
fi
if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null; then
    echo "install_chromium.sh: installed $("$CHROMIUM" --version 2>/dev/null)." >&2
else
    echo "install_chromium.sh: apt-get install chromium failed; the screenshot test is skipped." >&2
fi
exit 0
