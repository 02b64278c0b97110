from .microlens import MicroLens

__all__ = ["MicroLens"]
