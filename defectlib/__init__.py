"""defectlib: surface-defect segmentation on the Magnetic Tile dataset.

Modules, one concern each: ``data`` (find, verify, validate, load),
``splits`` (near-duplicate groups, committed split), ``labels`` (polygons to
masks), ``transforms``, ``models``, ``losses``, ``metrics``, ``training``,
``experiments`` (configs, profiles, run records), ``inference``, ``viz``,
``cli``.
"""
from .data import CATEGORIES, CLASSES, DEFECT_CLASSES, DatasetError

__version__ = "0.1.0"
__all__ = ["CATEGORIES", "CLASSES", "DEFECT_CLASSES", "DatasetError", "__version__"]
