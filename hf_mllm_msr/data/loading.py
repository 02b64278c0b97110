"""The data layer's entry point: `load_msr_dataset` builds (once, cached) and loads any source in the one canonical
schema, with preprocessing as options.

Source builders subclass `MsrBuilder` (re-exported here from :mod:`hf_mllm_msr.data.builder`) and only read raw items
and interactions. Skipped bad input is counted, logged and saved as `build_report.json` next to the Arrow files
(read it back with `read_build_report(dataset)`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

import datasets

from .builder import BUILD_REPORT, MsrBuilder

CACHE_ENV = "HF_MLLM_MSR_CACHE"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "hf_mllm_msr" / "datasets"
EXAMPLE_ONLY_OPTIONS = {"seed", "num_train_negatives", "num_test_negatives", "num_validation_negatives"}
IMAGE_OPTIONS = {"max_image_size", "max_image_pixels"}


class InsufficientDataError(ValueError):
    """The data cannot support a model (too few rows, no item seen twice, no validation users, ...).

    It is a fact about the data, not a bug: a report that meets it shows the model's row with this message as the
    reason and goes on with the other models. Any other exception, a bug in our code included, still stops the job.
    """


def _fingerprint(builder_class, data_dir) -> str:
    """Package version + builder/data-layer source + raw files' names, sizes and mtimes: a cache key that changes
    when the code or the raw data does (datasets itself sees neither for builders shipped in a package)."""
    from ..version import __version__
    from . import columnar, images, preprocessing, schema

    digest = hashlib.sha256(__version__.encode())
    for module in (
        inspect.getmodule(builder_class),
        inspect.getmodule(MsrBuilder),
        columnar,
        images,
        preprocessing,
        schema,
    ):
        digest.update(Path(inspect.getfile(module)).read_bytes())
    if data_dir:
        for root, dirs, files in os.walk(data_dir):
            dirs.sort()
            for name in sorted(files):
                stat = os.stat(os.path.join(root, name))
                digest.update(
                    f"{os.path.relpath(os.path.join(root, name), data_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
                )
    return digest.hexdigest()[:16]


# The shipped builders, one folder each (`dataset_builders/<name>/<name>.py`, installed as this package). Builders
# import this layer (`data.builder`); this layer finds them as files, as `datasets.load_dataset` finds a script,
# and never imports their package.
BUILDERS_PACKAGE = "hf_mllm_msr.dataset_builders"


def _builders_dir() -> Path:
    """The folder of the shipped builders (found, not imported)."""
    spec = importlib.util.find_spec(BUILDERS_PACKAGE)
    return Path(next(iter(spec.submodule_search_locations)))


def _load_builder(script: Path, module_name: str, reuse: bool = True):
    """The one `MsrBuilder` subclass defined in `script`, imported as `module_name` (once per process when `reuse`;
    a user's folder runs afresh each time, so two folders of the same name never mix)."""
    if not reuse or module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # so inspect (the cache fingerprint) and pickling find it
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[spec.name]
            raise
    module = sys.modules[module_name]
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, MsrBuilder) and value.__module__ == module.__name__
    ]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"{script} must define exactly one MsrBuilder subclass, found {len(found)}")


def _registered_builders() -> dict:
    """``{name: builder class}`` of the shipped builders: every ``dataset_builders/<name>/<name>.py``."""
    return {
        folder.name: _load_builder(folder / f"{folder.name}.py", f"{BUILDERS_PACKAGE}.{folder.name}.{folder.name}")
        for folder in sorted(_builders_dir().iterdir())
        if (folder / f"{folder.name}.py").is_file()
    }


def _builder_class(name):
    """A registered builder name, or a path to a builder folder holding `<folder name>.py`."""
    builders = _registered_builders()
    if str(name) in builders:
        return builders[str(name)]
    folder = Path(name)
    if folder.is_dir():
        if folder.resolve().parent == _builders_dir().resolve() and folder.name in builders:
            return builders[folder.name]
        script = folder / f"{folder.name}.py"
        if script.is_file():
            return _load_builder(script, f"msr_builder_{folder.name}", reuse=False)
    raise ValueError(
        f"unknown dataset {name!r}: use one of {sorted(builders)} or a path to a folder with <folder name>.py "
        "defining an MsrBuilder subclass"
    )


def load_msr_dataset(name, config_name: str, data_dir=None, cache_dir=None, num_proc: int | None = None, **options):
    """Build (once, cached) and load one configuration of a multimodal sequential-recommendation dataset.

    Args:
        name: a registered builder ("synthetic", "movielens", "amazon_reviews_2023", "microlens") or a path to
            a builder folder `<dir>/<dir>.py` defining one `MsrBuilder` subclass (its code runs: pass only
            folders you trust).
        config_name: "items", "sequences" or "examples".
        data_dir: folder with the raw files (not needed by "synthetic").
        cache_dir: where built datasets are kept; default `$HF_MLLM_MSR_CACHE` or `~/.cache/hf_mllm_msr/datasets`.
        num_proc: as in `datasets.load_dataset`, passed to `download_and_prepare`. The build's heavy part (reading,
            k-core, histories, split) runs on Arrow tables in one process, with pyarrow's own threads; each split is
            then written as one shard, so `datasets` writes it with one process (it logs so). A cached build is read
            back whatever the value.
        **options: `MsrConfig` fields (and the source's own, e.g. `num_users` for "synthetic").

    Returns:
        `datasets.Dataset` for "items" and "sequences"; `datasets.DatasetDict` (train/validation/test) for
        "examples". Skips of bad input: `read_build_report(dataset)`.
    """
    builder_class = _builder_class(name)
    if config_name not in ("items", "sequences", "examples"):
        raise ValueError(f"config_name must be 'items', 'sequences' or 'examples', got {config_name!r}")
    known = {field.name for field in fields(builder_class.BUILDER_CONFIG_CLASS)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name!r}; known: {sorted(known - {'name', 'version'})}")
    # options a configuration does not depend on are dropped, so e.g. items built once serve every seed
    unused = {"items": EXAMPLE_ONLY_OPTIONS, "sequences": EXAMPLE_ONLY_OPTIONS | IMAGE_OPTIONS}
    options = {key: value for key, value in options.items() if key not in unused.get(config_name, IMAGE_OPTIONS)}
    if "max_history" in options and options["max_history"] is None:
        options["max_history"] = 0  # datasets ignores None-valued options, so "the whole past" is spelled 0
    data_dir = str(Path(data_dir).resolve()) if data_dir else None
    cache_dir = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    builder = builder_class(
        cache_dir=str(cache_dir),
        dataset_name=f"msr_{builder_class.SOURCE}",
        config_name=config_name,
        data_dir=data_dir,
        hash=_fingerprint(builder_class, data_dir),
        **options,
    )
    builder.config.validate()
    try:
        builder.download_and_prepare(num_proc=num_proc)
    except datasets.exceptions.DatasetGenerationError as error:
        # datasets wraps errors raised while writing rows; surface ours (they name the file/row and the fix)
        if isinstance(error.__cause__, (ValueError, OSError)):
            raise error.__cause__ from None
        raise
    dataset = builder.as_dataset()
    return dataset if config_name == "examples" else dataset["train"]


def read_build_report(dataset) -> dict:
    """The build report saved next to a dataset's Arrow files: `{"skips": {reason: {"count", "first"}}, "stats"}`."""
    if isinstance(dataset, datasets.DatasetDict):
        dataset = next(iter(dataset.values()))
    for cache_file in dataset.cache_files:
        path = Path(cache_file["filename"]).parent / BUILD_REPORT
        if path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError("no build report: this dataset was not built by load_msr_dataset")
