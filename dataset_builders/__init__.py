"""Dataset builders, one folder per source (each with its README dataset card).

Installed as `hf_mllm_msr.dataset_builders` (see pyproject.toml), so imports here are relative.
"""

from .synthetic import Synthetic

# name -> builder class, for `load_msr_dataset(name, ...)`
BUILDERS = {"synthetic": Synthetic}
