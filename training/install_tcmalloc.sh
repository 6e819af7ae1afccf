#!/bin/sh
# tcmalloc (Debian package libtcmalloc-minimal4) for CPU training: `make setup` installs it, `make quickstart` and
# `make ablation` preload it (training/cpu_allocator.py says why: CPU training about a sixth faster on 2 cores).
#   sh training/install_tcmalloc.sh          install it once if missing (apt-get, as root or with passwordless sudo)
#   sh training/install_tcmalloc.sh --path   print the library's path, or nothing when it is not installed
# Never fails the caller: without it training runs with glibc's malloc, and the training log says so.
set -u
find_library() {
    for candidate in /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4; do
        if [ -e "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
if [ "${1:-}" = "--path" ]; then
    find_library || true
    exit 0
fi
if find_library >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_tcmalloc.sh: no apt-get here; training uses glibc's malloc (slower; see README)." >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install_tcmalloc.sh: need root (or passwordless sudo) for apt-get; training uses glibc's malloc." >&2
    exit 0
fi
# Update the package lists only if apt does not know the package yet (a fresh container has empty lists).
if ! apt-cache show libtcmalloc-minimal4 >/dev/null 2>&1; then
    $SUDO apt-get update -q >/dev/null || echo "install_tcmalloc.sh: apt-get update failed." >&2
fi
if DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends libtcmalloc-minimal4 \
        >/dev/null; then
    echo "install_tcmalloc.sh: installed $(find_library)." >&2
else
    echo "install_tcmalloc.sh: apt-get install libtcmalloc-minimal4 failed; training uses glibc's malloc." >&2
fi
exit 0
