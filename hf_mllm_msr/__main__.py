"""`python -m hf_mllm_msr <stage> ...` is the same as `mllm-msr <stage> ...`."""

from .cli import main

if __name__ == "__main__":
    main()
