"""Docker and Docker Compose: the compose project (CLI with argument lists, the Docker SDK for
state, health, logs and exec) and the rolling replacement of LiteLLM behind HAProxy."""
