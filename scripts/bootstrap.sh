#!/usr/bin/env bash
# Prepares a fresh Debian machine for `make demo` / `make test`: the Debian packages the real-peer
# tests need (installed only when running as root and only when missing), then a virtual
# environment with the package and its extras. Idempotent, so every make target may call it.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(qemu-system-x86 linux-image-amd64 busybox-static nvme-cli tcpdump tshark
              libvirt-dev pkg-config iproute2 kmod gcc python3-dev linux-libc-dev valgrind)
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test}

missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "bootstrap: not root, skipping Debian packages: ${missing[*]} (tests needing them will say so)"
    fi
fi

stamp="$VENV/.installed-$EXTRAS"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ native -nt "$stamp" ]; then
    # pip's warnings and setuptools' deprecation notes go to a log, shown only if pip fails
    log="$VENV/install.log"
    echo "bootstrap: installing the package with extras [$EXTRAS] into $VENV"
    if ! { "$VENV/bin/pip" install -q --upgrade pip && \
           "$VENV/bin/pip" install -q -e ".[$EXTRAS]"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "bootstrap: pip failed (log above, also in $log)" >&2
        exit 1
    fi
    touch "$stamp"
fi

# The project's own modules as bytecode, beside their sources (only what changed is recompiled;
# Python checks each file against its source before use, so a stale one is never run). The
# package is installed editable, and with PYTHONDONTWRITEBYTECODE set, as on the CI machines,
# every interpreter compiled it anew: ~0.12 s of CPU per start here, multiplied for the
# processes `make test` runs under callgrind (the instructions smoke run: 240 -> 168 s of CPU)
# and under emulation in the kernel VM.
"$VENV/bin/python" -m compileall -q -j 0 pynvmetcp driver tests benchmarks scripts >/dev/null
