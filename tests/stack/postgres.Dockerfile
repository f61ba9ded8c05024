# The REAL PostgreSQL (Debian 12's postgresql-15) for the test stack, on the debootstrap base:
# no registry is reachable here, so this image stands in for the official `postgres` image -
# the program is real, only the packaging differs. Its entrypoint (postgres-entrypoint.sh)
# does what the official image's does with POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, so
# docker-compose.yml's postgres service (environment, volume, healthcheck) runs unchanged.
# .ci/setup tags it by a hash of this file and the entrypoint (tests/support/stack.py).
ARG BASE=ai-gateway-base:bookworm
FROM ${BASE}
# postgresql-common first, told not to create a cluster of its own (as the official image does)
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common; \
    sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; \
    rm -rf /var/lib/apt/lists/*; \
    install -d -o postgres -g postgres -m 3777 /var/run/postgresql; \
    install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data
# the server's own programs first (pg_isready, psql, initdb), not Debian's version wrappers
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["bash", "/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
