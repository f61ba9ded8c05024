# The LiteLLM stand-in (tests/litellm_standin.py) as the test stack's litellm service.
ARG BASE=ai-gateway-base:bookworm
FROM ${BASE}
COPY litellm_standin.py /standin/litellm_standin.py
CMD ["python3", "/standin/litellm_standin.py"]
