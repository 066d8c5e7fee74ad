"""Class names of the Magnetic Tile dataset, in one place.

Introduced in chapter 01 (EDA).  Every other module takes class names as an
argument (a folder dataset of your own declares its own); these are the
defaults for Magnetic Tile.
"""
from __future__ import annotations

#: Pixel classes; the index is the value in a class-index mask.
CLASSES: tuple[str, ...] = ("background", "Blowhole", "Break", "Crack", "Fray", "Uneven")
#: Image-level categories of the dataset, including defect-free ``Free``.
CATEGORIES: tuple[str, ...] = ("Blowhole", "Break", "Crack", "Fray", "Uneven", "Free")
#: The defect classes (every class but background).
DEFECT_CLASSES: tuple[str, ...] = CLASSES[1:]
#: The category of images without any defect.
FREE = "Free"
