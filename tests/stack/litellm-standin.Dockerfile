# The LiteLLM stand-in (tests/support/standin.py) as the test stack's litellm service.
ARG BASE=ai-gateway-base:bookworm
FROM ${BASE}
COPY support/standin.py /standin/litellm_standin.py
CMD ["python3", "/standin/litellm_standin.py"]
