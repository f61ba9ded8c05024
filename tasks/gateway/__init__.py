"""The gateway's operations: the stack with its keys (start, stop, restart, status), the .env
setup and its checks, the master key, backup / restore and upgrade - plain functions over the
layers below, no Invoke and no printing. How the tasks reach LiteLLM and Open WebUI (host port
or inside the container) is ``connect``."""
