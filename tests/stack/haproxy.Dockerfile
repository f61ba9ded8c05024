# The REAL HAProxy (Debian 12's haproxy 2.6) for the test stack, on the debootstrap base: no
# registry is reachable here, so this image stands in for the official `haproxy` image that
# docker-compose.yml pins - the program is real, only the packaging differs. As the official
# image: the configuration at /usr/local/etc/haproxy/haproxy.cfg, master-worker mode in the
# foreground, user haproxy, SIGUSR1 (soft stop) to stop, and bash for `docker exec`.
# .ci/setup tags it by a hash of this file (tests/support/stack.py).
ARG BASE=ai-gateway-base:bookworm
FROM ${BASE}
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy; \
    rm -rf /var/lib/apt/lists/*; \
    install -d -m 755 /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
