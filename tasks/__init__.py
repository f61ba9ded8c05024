"""AI gateway tasks: the root Invoke namespace (``stack``, ``keys``, ``env``) and its defaults.

Importing this package is cheap: httpx and the docker SDK are imported only by the tasks that
use them.
"""

from invoke.collection import Collection

from . import env, keys, stack
from .cli import install_config_error_hook
from .config.settings import DEFAULTS

install_config_error_hook()

ns = Collection()
ns.add_collection(Collection.from_module(stack, name="stack"))
ns.add_collection(Collection.from_module(keys, name="keys"))
ns.add_collection(Collection.from_module(env, name="env"))
ns.configure(DEFAULTS)

__all__ = ["ns"]
