"""HTTP clients over httpx: LiteLLM's admin API (``litellm``), Open WebUI's (``openwebui``), and
the transport that sends a request from inside a container (``transport``)."""
