from .movielens import MovieLens

__all__ = ["MovieLens"]
