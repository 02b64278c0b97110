from .amazon_reviews_2023 import AmazonReviews2023

__all__ = ["AmazonReviews2023"]
