"""The layout shows the method: each stage subpackage imports alone, with no import cycle, and never imports a
higher stage.

The layers, lowest first (a module may import its own layer and lower ones, never a higher one):

    0  prompts, data, models, testing   (no stage above them)
    1  evaluation                        (metrics, bootstrap, baselines, baseline_scoring, report: data only)
    2  summarization                     (data, models, prompts)
    3  recommendation                    (+ evaluation metrics for validation, summarization's data rows)
    4  publishing                        (cards, push: + the recommender to resolve bases)
    5  demo, demo_arguments, cli         (everything)
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hf_mllm_msr"
LAYER = {
    "prompts": 0,
    "data": 0,
    "models": 0,
    "testing": 0,
    "dataset_builders": 0,
    "model_cards": 0,
    "evaluation": 1,
    "summarization": 2,
    "recommendation": 3,
    "publishing": 4,
    "demo": 5,
    "demo_arguments": 5,
    "cli": 5,
    "__main__": 5,
    "__init__": 5,
}


def part_of(module: str) -> str:
    """The top part of a module path inside the package: 'recommendation.scoring' -> 'recommendation'."""
    return module.split(".")[0]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported hf_mllm_msr module) of every import in a file, including those inside functions."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE).parent.parts)
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
            names = [target] if target else [alias.name for alias in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name[len("hf_mllm_msr.") :]) for a in node.names if a.name.startswith("hf_mllm_msr.")
            ]
    return found


def test_no_module_imports_a_higher_stage():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "metric_modules" in path.parts or "dataset_builders" in path.parts:
            continue
        own = part_of(".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for line, target in imports(path):
            if target and LAYER.get(part_of(target), 0) > LAYER[own]:
                offences.append(f"{path.relative_to(PACKAGE)}:{line} ({own}) imports {target}")
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize(
    "subpackage", ["data", "summarization", "recommendation", "evaluation", "models", "publishing"]
)
def test_each_stage_imports_alone_in_a_fresh_interpreter(subpackage):
    # Every module of the stage, imported first in a new process: an import cycle fails here (partially initialized
    # module), whatever the order the rest of the package would have imported things in.
    modules = sorted(p.stem for p in (PACKAGE / subpackage).glob("*.py") if p.stem != "__init__")
    for module in modules:
        code = f"import hf_mllm_msr.{subpackage}.{module}"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{code}:\n{proc.stderr[-2000:]}"
