"""LiteLLM virtual keys: the rotation protocol (``rotation``, one function per step, journaled),
the lifecycle built on it (``manager``: create, rotate, revoke, list), rotation on a schedule,
and the consumers that are handed a new key (Open WebUI, other applications' .env files,
Continue.dev's config)."""
