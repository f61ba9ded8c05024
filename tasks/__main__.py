"""``python -m tasks keys.list``: the same collections without the ``invoke`` command."""

from invoke.program import Program

from . import ns

Program(namespace=ns, version="0.1.0", name="ai-gateway tasks").run()
