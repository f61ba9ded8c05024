# The test stack's litellm service: the REAL LiteLLM proxy (from a venv on the host, bind-mounted
# read-only with its Python, Node and the Prisma query-engine stand-in) on a Debian 12 base with
# psql, which applies LiteLLM's SQL migrations before the proxy starts (litellm_real_entrypoint.py;
# the native schema engine LiteLLM's image runs them with cannot be downloaded here).
ARG BASE=ai-gateway-base:bookworm
FROM ${BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        postgresql-client-15 openssl >/dev/null && rm -rf /var/lib/apt/lists/*
COPY stack/litellm_real_entrypoint.py /standin/litellm_real_entrypoint.py
ENTRYPOINT ["python3", "/standin/litellm_real_entrypoint.py"]
