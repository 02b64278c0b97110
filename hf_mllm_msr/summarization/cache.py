"""The generation cache and the content keys it is addressed by.

A :class:`GenerationCache` is one sqlite3 file, one row per output, committed per batch; the keys hash the model
weights (or their Hub commit), the prompt and the image pixels, so a rerun or a killed run reuses every committed
output and a changed model, prompt or picture never does.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from functools import lru_cache
from pathlib import Path

import torch


class GenerationCache:
    """A persistent key -> text store in one sqlite3 file (``path=None``: in memory, for tests).

    Several processes (accelerate ranks) may share the file: sqlite locks it and writers wait.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=600)
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut, not just SIGKILL
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, model TEXT, prompt TEXT, "
                "output TEXT, settings TEXT, created REAL)"
            )

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found = {}
        for start in range(0, len(keys), 500):  # sqlite caps the number of bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT key, output FROM generations WHERE key IN ({marks})", chunk))
        return found

    def put_many(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        """Stores ``(key, model, prompt, output, settings)`` rows in one transaction; existing keys are kept."""
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO generations VALUES (?, ?, ?, ?, ?, ?)", [(*row, now) for row in rows]
            )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def image_hash(image) -> str:
    """sha256 of the decoded pixels (mode + size + bytes), so re-encoding the same picture keeps the key."""
    if image is None:
        return ""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


@lru_cache(maxsize=16)
def hash_files(paths: tuple[str, ...], stamps: tuple) -> str:
    """sha256 of weight files (first 16 hex digits). Hashing 0.5 GB takes seconds, so the result is also kept on
    disk under the files' (path, size, mtime) stamps, like make/rsync, and a rerun in a new process is instant."""
    from ..models.offline import cache_root

    memo_path = cache_root() / "weight_hashes.json"
    stamp = json.dumps([paths, stamps])
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if stamp in memo:
        return memo[stamp]
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                digest.update(chunk)
    # forget files that are gone (test folders), so the memo does not grow forever
    memo = {k: v for k, v in memo.items() if all(os.path.exists(p) for p in json.loads(k)[0])}
    memo[stamp] = digest.hexdigest()[:16]
    try:  # best effort, atomic replace; a lost update only costs a re-hash
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_name(f".{memo_path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, memo_path)
    except OSError:
        pass
    return memo[stamp]


def model_fingerprint(model) -> str:
    """Identifies the exact weights: the Hub commit when loaded from the Hub, else a hash of the weight files
    (so a moved folder keeps its cache and an edited one does not), else a hash of the parameters."""
    source = str(getattr(model.config, "_name_or_path", "") or "")
    commit = getattr(model.config, "_commit_hash", None)
    if commit and not Path(source).is_dir():
        return f"{source}@{commit}"
    if source and Path(source).is_dir():
        files = sorted(str(p) for p in Path(source).iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
        if files:
            stamps = tuple((os.path.getsize(f), os.stat(f).st_mtime_ns) for f in files)
            return f"weights:{hash_files(tuple(files), stamps)}"
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return f"params:{digest.hexdigest()[:16]}"
