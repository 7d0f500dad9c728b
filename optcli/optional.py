"""Optional packages, declared by the registry entries (engines, quantizers, data sources) that need them.

`optcli doctor` lists exactly these, so the install command a missing-dependency error suggests and the
one doctor prints are the same string. Nothing here imports the packages themselves.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class OptionalPackage:
    """One optional dependency: `module` is what gets imported, `distributions` what pip installs
    (any one of them; the first found gives the version), `install` the command that adds it."""

    name: str
    module: str
    distributions: tuple[str, ...]
    install: str

    def found(self) -> bool:
        """Whether the module can be found (cheap: nothing is imported but its parent packages)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ValueError:  # in sys.modules without a spec: made at run time (a test double)
            return sys.modules.get(self.module) is not None
        except Exception:  # a parent package is missing or broken (ImportError, OSError, ...)
            return False
