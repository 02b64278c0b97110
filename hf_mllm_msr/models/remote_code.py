"""The code of a pipeline, saved next to its model as flat files that load where hf_mllm_msr is not installed.

transformers' ``custom_object_save`` copies a module and the siblings it imports with ``from .name import``; it
cannot follow ``from ..stage.name import``, and the modules a pipeline needs live in several stage folders
(``recommendation``, ``summarization``, ``data``, ``models``, and ``prompts`` at the top). `save_code` copies every
module of the closure into one folder instead and rewrites those imports as imports of the flat siblings, which is
what transformers' remote-code loader reads back (with the opt-in to remote code).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

RELATIVE_IMPORT = re.compile(r"^(?P<indent>[ \t]*)from[ \t]+(?P<module>\.+[\w.]*)[ \t]+import[ \t]", re.M)


def code_closure(module_name: str) -> dict[str, str]:
    """``{flat file name: source}`` of ``module_name`` and every package module it imports relatively, at any
    depth, with those imports rewritten as ``from .<flat name> import``."""
    files, full_names, pending = {}, {}, [module_name]
    while pending:
        name = pending.pop()
        flat = name.rsplit(".", 1)[-1]
        if full_names.setdefault(flat, name) != name:
            raise ValueError(f"{full_names[flat]} and {name}, both in the code of {module_name}, are both {flat}.py.")
        if f"{flat}.py" in files:
            continue
        module = importlib.import_module(name)
        source = Path(module.__file__).read_text(encoding="utf-8")

        def flatten(match, package=module.__package__):
            target = importlib.util.resolve_name(match["module"], package)
            pending.append(target)
            return f"{match['indent']}from .{target.rsplit('.', 1)[-1]} import "

        files[f"{flat}.py"] = RELATIVE_IMPORT.sub(flatten, source)
    return files


def save_pipeline(pipe, save_directory: str | Path, **kwargs) -> None:
    """``Pipeline.save_pretrained`` for a registered pipeline whose code spans the package: the model, its
    tokenizer / image processor, ``custom_pipelines`` in the model config, and the flat code closure."""
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    custom = {}
    for task, info in getattr(pipe, "_registered_impl", {}).items():
        if info["impl"] is type(pipe):
            leaf = type(pipe).__module__.rsplit(".", 1)[-1]
            custom[task] = {
                **info,
                "impl": f"{leaf}.{type(pipe).__name__}",
                "pt": tuple(c.__name__ for c in info["pt"]),
            }
    pipe.model.config.custom_pipelines = custom
    for name, source in code_closure(type(pipe).__module__).items():
        (folder / name).write_text(source, encoding="utf-8")
    pipe.model.save_pretrained(folder, **kwargs)
    for part in (pipe.tokenizer, pipe.feature_extractor, pipe.image_processor):
        if part is not None:
            part.save_pretrained(folder, **kwargs)
