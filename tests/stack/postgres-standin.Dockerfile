# The PostgreSQL stand-in (tests/stack/pg_standin.py) as the test stack's postgres service.
ARG BASE=ai-gateway-base:bookworm
FROM ${BASE}
COPY stack/pg_standin.py /standin/pg_standin.py
CMD ["python3", "/standin/pg_standin.py"]
