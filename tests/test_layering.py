"""The layout shows the method: each stage subpackage imports alone, with no import cycle, and never imports a
higher stage.

The layers, lowest first (a module may import its own layer and lower ones, never a higher one):

    0  prompts, data, models, testing, version   (no stage above them; nor model_cards, the card templates)
    1  dataset_builders                           (`data.builder` only; `data.loading` finds them as files)
    2  evaluation                                 (metrics, bootstrap, baselines, baseline_scoring, report: data only)
    3  summarization                              (data, models, prompts)
    4  recommendation                             (+ evaluation metrics for validation, summarization's data rows)
    5  publishing                                 (cards: + the recommender to resolve bases)
    6  scripts, cli, __main__, the package root `__init__` (everything: it imports every stage)

`from hf_mllm_msr import X` (or `from .. import X`) of a name that is not a submodule imports the package root.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hf_mllm_msr"
BUILDERS = ROOT / "dataset_builders"  # installed as hf_mllm_msr.dataset_builders
MAPPED = {"dataset_builders": BUILDERS, "model_cards": ROOT / "model_cards"}  # pyproject's package-dir
LAYER = {
    "prompts": 0,
    "data": 0,
    "models": 0,
    "testing": 0,
    "version": 0,
    "model_cards": 0,
    "dataset_builders": 1,
    "evaluation": 2,
    "summarization": 3,
    "recommendation": 4,
    "publishing": 5,
    "scripts": 6,
    "cli": 6,
    "__main__": 6,
    "__init__": 6,
}


def part_of(module: str) -> str:
    """The top part of a module path inside the package: 'recommendation.scoring' -> 'recommendation'."""
    return module.split(".")[0]


def module_parts(path: Path) -> tuple[str, ...]:
    """A file's module path inside the installed package: dataset_builders/x/x.py -> ('dataset_builders', 'x', 'x')."""
    if path.is_relative_to(BUILDERS):
        return ("dataset_builders", *path.relative_to(BUILDERS).with_suffix("").parts)
    return path.relative_to(PACKAGE).with_suffix("").parts


def root_or_submodule(name: str) -> str:
    """`from hf_mllm_msr import name`: a submodule, or else an attribute of the package root (`__init__`)."""
    return name if name in LAYER else "__init__"


def imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, imported hf_mllm_msr module) of every import in a file (or in `source` placed at `path`), including
    those inside functions."""
    tree = ast.parse(path.read_text() if source is None else source)
    package = ".".join(module_parts(path)[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("hf_mllm_msr"):
                target = node.module[len("hf_mllm_msr.") :] if node.module != "hf_mllm_msr" else ""
            else:
                continue
            names = [target] if target else [root_or_submodule(alias.name) for alias in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name[len("hf_mllm_msr.") :]) for a in node.names if a.name.startswith("hf_mllm_msr.")
            ]
    return found


def sources() -> list[Path]:
    """Every module of the installed package: hf_mllm_msr/ (but the metric scripts `evaluate` loads by path) and the
    builders."""
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "metric_modules" not in p.parts] + sorted(
        BUILDERS.rglob("*.py")
    )


def test_the_layers_name_what_exists():
    # A layer entry for a deleted module would hide nothing but mislead; a module without one would fail below only
    # when it imports something (LAYER[own]), and an import of it would count as layer 0.
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    mapped = {name for name, path in MAPPED.items() if (path / "__init__.py").exists()}
    assert set(LAYER) == modules | packages | mapped


def test_the_check_sees_the_package_root_and_the_builders():
    # `from .. import __version__` inside data/ reaches the root, which imports every stage; builders are a layer
    # of their own above data, so data importing them would close a cycle.
    assert imports(PACKAGE / "data" / "loading.py")  # it imports its own layer
    loading = textwrap.dedent(
        """
        from .. import __version__
        from ..dataset_builders import BUILDERS
        from hf_mllm_msr import load_msr_dataset
        from hf_mllm_msr import data
        """
    )
    found = imports(PACKAGE / "data" / "loading.py", source=loading)
    assert [target for _, target in found] == ["__init__", "dataset_builders", "__init__", "data"]
    assert LAYER["__init__"] > LAYER["data"] and LAYER["dataset_builders"] > LAYER["data"]
    assert all(part_of(".".join(module_parts(p))) == "dataset_builders" for p in BUILDERS.rglob("*.py"))


def test_no_module_imports_a_higher_stage():
    offences = []
    for path in sources():
        own = part_of(".".join(module_parts(path)))
        for line, target in imports(path):
            if target and LAYER.get(part_of(target), 0) > LAYER[own]:
                offences.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target}")
    assert not offences, "\n".join(offences)


# ~50 fresh interpreters, each importing torch + transformers (5-10 s apiece): minutes. The AST test above forbids every
# upward import (what an import cycle between stages needs), and runs in the default suite.
@pytest.mark.slow
@pytest.mark.parametrize(
    "subpackage", ["data", "summarization", "recommendation", "evaluation", "models", "publishing", "scripts"]
)
def test_each_stage_imports_alone_in_a_fresh_interpreter(subpackage):
    # Every module of the stage, imported first in a new process: an import cycle fails here (partially initialized
    # module), whatever the order the rest of the package would have imported things in.
    modules = sorted(p.stem for p in (PACKAGE / subpackage).glob("*.py") if p.stem != "__init__")
    for module in modules:
        code = f"import hf_mllm_msr.{subpackage}.{module}"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{code}:\n{proc.stderr[-2000:]}"
