"""defectlib: surface-defect segmentation on the Magnetic Tile dataset and your own images.

One concern per module; the README's Layout section maps each module, what it
owns and what it may import.  ``import defectlib`` loads only the class names,
the error types and the version (no PyTorch); import the modules you use,
e.g. ``from defectlib import experiments, report``.
"""
from .classes import CATEGORIES, CLASSES, DEFECT_CLASSES
from .errors import CheckpointError, ConfigError, DatasetError, OutputError

__version__ = "0.3.0"
__all__ = ["CATEGORIES", "CLASSES", "DEFECT_CLASSES", "CheckpointError", "ConfigError", "DatasetError",
           "OutputError", "__version__"]
