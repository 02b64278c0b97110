"""The package version, in a module of its own: the data layer keys its cache on it without importing the package
root (which imports every stage)."""

__version__ = "0.1.0"
