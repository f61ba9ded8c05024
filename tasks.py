"""Invoke's entry point. The tasks live in the ``tasks/`` package beside this file.

Invoke imports this file under the module name ``tasks``, which hides the ``tasks/``
package of the same name. So this file loads the package from its folder, puts it in
``sys.modules['tasks']`` (where plain ``import tasks`` in tests and tools finds it too), and
hands Invoke the package's namespace. ``invoke --list``, ``python -m pytest`` and
``python -m tasks`` therefore all see one and the same set of collections.
"""

import importlib.util
import sys
from pathlib import Path

_package_dir = Path(__file__).resolve().parent / "tasks"
_spec = importlib.util.spec_from_file_location(
    "tasks", _package_dir / "__init__.py", submodule_search_locations=[str(_package_dir)]
)
assert _spec is not None and _spec.loader is not None
_package = importlib.util.module_from_spec(_spec)
sys.modules["tasks"] = _package
# Invoke turns bytecode caching off before it loads a tasks file (its --write-pyc flag), so each
# task would compile the package's modules again (about 30 ms of a 0.2 s keys.list). The package
# caches its bytecode in tasks/__pycache__ as any Python package does, unless the user asked
# Python not to (PYTHONDONTWRITEBYTECODE or -B). Modules the tasks import later are cached too.
sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)
_spec.loader.exec_module(_package)

ns = _package.ns
