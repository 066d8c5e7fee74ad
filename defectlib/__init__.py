"""defectlib: surface-defect segmentation on the Magnetic Tile dataset and your own images.

Modules, one concern each: ``classes`` (class names), ``config`` (the schema
of a run's settings), ``data`` (find, verify, validate, load), ``splits``
(region groups, fold partitions), ``labels`` (polygons to masks),
``transforms`` (augmentation), ``models`` (build, load, predict), ``losses``,
``metrics``, ``training`` (the loop), ``experiments`` (runs and their
records), ``report`` (tables and comparisons for the chapters),
``inference``, ``viz``, ``cli``.
"""
from .classes import CATEGORIES, CLASSES, DEFECT_CLASSES
from .data import DatasetError

__version__ = "0.2.0"
__all__ = ["CATEGORIES", "CLASSES", "DEFECT_CLASSES", "DatasetError", "__version__"]
