#!/usr/bin/env bash
# Entrypoint of the test PostgreSQL image: what the official image's docker-entrypoint.sh does
# with POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, written for this project (not copied):
# - as root: make $PGDATA the postgres user's (0700) and run again as that user;
# - on an EMPTY data folder only: initdb with POSTGRES_USER as superuser and POSTGRES_PASSWORD
#   as its password (read from a pipe, never an argument), local and 127.0.0.1 connections
#   trusted (initdb's default, as upstream), every other host connection by scram-sha-256;
#   then a temporary server on the Unix socket only (listen_addresses='') creates POSTGRES_DB,
#   and stops;
# - every start: `postgres` listening on all addresses. A data folder that was initialised
#   before keeps its users and passwords: a changed POSTGRES_PASSWORD changes nothing (upstream
#   behaves the same).
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
say() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }

if [ "${1:-}" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- bash "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        say "error: the database is uninitialized and POSTGRES_PASSWORD is not set"
        exit 1
    fi
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    say "initialising $PGDATA (superuser $user, database $db)"
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    # the temporary server: Unix socket only, so nothing outside can reach it (or see it ready)
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -t 60 start
    if [ "$db" != postgres ]; then
        exists="$(psql -v ON_ERROR_STOP=1 -X -q -tA --username "$user" --dbname postgres \
            --set db="$db" <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
        if [ -z "$exists" ]; then
            psql -v ON_ERROR_STOP=1 -X -q --username "$user" --dbname postgres --set db="$db" \
                <<<'CREATE DATABASE :"db";'
        fi
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    say "initialised; starting the server"
else
    say "$PGDATA holds a database already: initialisation skipped (passwords unchanged)"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "${@:2}"
