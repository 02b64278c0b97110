from .synthetic import Synthetic

__all__ = ["Synthetic"]
