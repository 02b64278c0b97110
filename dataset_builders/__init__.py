"""Dataset builders, one folder per source (each with its README dataset card).

Installed as `hf_mllm_msr.dataset_builders` (see pyproject.toml), so imports here are relative.
"""

from .amazon_reviews_2023 import AmazonReviews2023
from .microlens import MicroLens
from .movielens import MovieLens
from .synthetic import Synthetic

# name -> builder class, for `load_msr_dataset(name, ...)`
BUILDERS = {
    "synthetic": Synthetic,
    "movielens": MovieLens,
    "amazon_reviews_2023": AmazonReviews2023,
    "microlens": MicroLens,
}
