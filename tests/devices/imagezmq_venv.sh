#!/usr/bin/env bash
# Makes a Python venv with PACKAGEs (from PyPI) under DIR, unless DIR already has a working
# one, and prints the venv's python path on stdout (and nothing else there). Each argument
# after DIR is PACKAGE=MODULE (the module that proves it is installed) or just PACKAGE.
# Without packages: pyzmq, imagezmq and numpy, for the imagezmq tests.
#
#   python=$(tests/devices/imagezmq_venv.sh "${TMPDIR:-/tmp}/framegate-imagezmq-venv")
#   "$python" tests/devices/imagezmq_sender.py --to tcp://127.0.0.1:5555 --array-seed 1
#   python=$(tests/devices/imagezmq_venv.sh /tmp/prom-venv prometheus-client=prometheus_client)
#
# Self-contained for fresh CI machines: when `python3 -m venv` fails because the Debian package
# python3-venv (ensurepip) is missing, it installs that with apt-get (as root, or with sudo
# without a password) and tries again. Progress goes to stderr.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [PACKAGE[=MODULE]...]" >&2
    exit 2
fi
dir=$1
shift
python=$dir/bin/python
specs=("$@")
if [ ${#specs[@]} -eq 0 ]; then
    specs=(pyzmq=zmq imagezmq=imagezmq numpy=numpy)
fi
packages=()
modules=()
for spec in "${specs[@]}"; do
    packages+=("${spec%%=*}")
    module=${spec#*=}
    modules+=("${module//-/_}")
done
imports="import $(IFS=,; echo "${modules[*]}")"

# A venv that imports them all is reused as it is: no network needed.
if [ -x "$python" ] && "$python" -c "$imports" 2>/dev/null; then
    echo "$python"
    exit 0
fi

make_venv() {
    rm -rf "$dir"
    python3 -m venv "$dir" >&2
}

if ! make_venv; then
    echo "imagezmq_venv: python3 -m venv failed; installing python3-venv" >&2
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "imagezmq_venv: need root (or passwordless sudo) to apt-get install python3-venv" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q >&2
    # Debian names the package after the minor version on some releases (python3.11-venv).
    minor=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    "${sudo[@]}" apt-get install -y -q python3-venv >&2 ||
        "${sudo[@]}" apt-get install -y -q "python$minor-venv" >&2
    make_venv
fi

"$python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
"$python" -c "$imports" >&2
echo "$python"
