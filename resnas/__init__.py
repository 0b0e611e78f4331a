"""resnas: the residual units of He et al. 2016 (Identity Mappings in Deep Residual Networks) as timm
models and an Optuna architecture search over them.

Importing resnas registers its networks with timm::

    >>> import timm, resnas
    >>> model = timm.create_model("preact_resnet164")
"""

import importlib
import os
import sys

__all__ = ["ArchSpec", "ResNet", "ResidualUnit", "PLACEMENTS", "SHORTCUTS", "build", "count_macs",
           "count_params", "zoo"]
__version__ = "0.1.0"

_HOME = {"ArchSpec": "spec", "ResNet": "network", "build": "network", "count_macs": "network",
         "count_params": "network", "PLACEMENTS": "units", "SHORTCUTS": "units", "ResidualUnit": "units", "zoo": "zoo"}


def _the_command() -> bool:
    """Whether this interpreter runs the ``resnas`` command (its console script, ``python -m resnas``): its
    commands import the zoo where they need it, so ``resnas --help`` does without torch and timm."""
    argv = getattr(sys, "argv", None) or [""]  # an embedded interpreter may have none
    launched = getattr(sys, "orig_argv", None) or argv  # python -m resnas: argv[0] is this package's path
    module = any(a == "-m" and b == "resnas" for a, b in zip(launched, launched[1:]))
    return module or os.path.basename(argv[0]) == "resnas"


def __getattr__(name: str):
    if name in _HOME:
        module = importlib.import_module(f".{_HOME[name]}", __name__)
        return module if name == "zoo" else getattr(module, name)
    raise AttributeError(f"module 'resnas' has no attribute {name!r}")


if not _the_command():
    from . import zoo  # noqa: F401  registers the models with timm
