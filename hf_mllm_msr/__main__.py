"""`python -m hf_mllm_msr demo ...` is the same as `mllm-msr demo ...`."""

from .cli import main

if __name__ == "__main__":
    main()
