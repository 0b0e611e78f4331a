"""resnas: the residual units of He et al. 2016 (Identity Mappings in Deep Residual Networks) as timm
models and an Optuna architecture search over them.

Importing resnas registers its networks with timm::

    >>> import timm, resnas
    >>> model = timm.create_model("preact_resnet164")
"""

from . import zoo  # registers the models with timm
from .network import ResNet, build, count_macs, count_params
from .spec import ArchSpec
from .units import PLACEMENTS, SHORTCUTS, ResidualUnit

__all__ = ["ArchSpec", "ResNet", "ResidualUnit", "PLACEMENTS", "SHORTCUTS", "build", "count_macs",
           "count_params", "zoo"]
__version__ = "0.1.0"
