"""The DeepSeg version (its own module so that every layer can name it without importing the package facade)."""
__version__ = "0.1.0"
