"""Old public names, still importable for one release: each gives the renamed object with one
``FutureWarning`` per name and process. One table for every rename, read by the packages that
exported the old names (``p2probust``, ``p2probust.aggregators``, ``p2probust.topology``)."""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable

#: old name -> (module that defines the new name, new name)
RENAMED: dict[str, tuple[str, str]] = {
    "CentredClipping": ("p2probust.aggregators", "CenteredClipping"),
    "SelfCentredClipping": ("p2probust.aggregators", "SelfCenteredClipping"),
    "NeighborTable": ("p2probust.topology", "NeighbourTable"),
}
_warned: set[str] = set()


def renamed(name: str, stacklevel: int = 3) -> Any:
    """The object behind the old ``name`` (warns the first time)."""
    module, new = RENAMED[name]
    if name not in _warned:
        _warned.add(name)
        warnings.warn(f"p2probust: {name} is renamed {new}; the old name will be removed", FutureWarning,
                      stacklevel=stacklevel)
    return getattr(importlib.import_module(module), new)


def module_getattr(module: str, sources: tuple[str, ...] = ()) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``module`` that serves the old names of :data:`RENAMED` whose new name
    lives in ``module`` or in one of ``sources`` (a package re-exporting another's names)."""
    served = {old for old, (where, _) in RENAMED.items() if where == module or where in sources}

    def __getattr__(name: str) -> Any:
        if name in served:
            return renamed(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
