"""Raw interactions as Arrow columns, and the preprocessing on them: validation, dedup, iterative k-core and the
time-ordered histories, as sorts and counts over integer codes instead of a Python tuple and dict entry per row.

Why pyarrow and numpy: `datasets` already carries pyarrow; its JSON reader parses review lines on every core
(Amazon's `<Category>.jsonl` at several hundred MB/s here) and ids become integer codes with one
`dictionary_encode`, after which sorting, dedup and k-core are numpy sorts and bincounts. The rules are the ones of
the row-by-row code they replace (`preprocessing.k_core`, `parse_timestamp`, `read_text_lines`), so the built
datasets are byte-identical (tests/test_build_identity.py); lines the fast path cannot vouch for are read by the
old per-line Python rules.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from . import preprocessing
from .preprocessing import Skips, parse_timestamp

INTERACTIONS = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.float64())])
PY_WHITESPACE = "".join(chr(code) for code in range(0x110000) if chr(code).isspace())  # what str.strip() strips
# JSON read per pyarrow call (parsed on every core). Small enough that most blocks of a file with a bad line every
# ~20 000 lines are clean (a block with one is parsed about twice), large enough that the per-call cost vanishes.
BLOCK_BYTES = 4 << 20


def strip(column) -> pa.ChunkedArray:
    """`str(value or "").strip()` on a string column: nulls become "", Python's whitespace is trimmed."""
    return pc.utf8_trim(pc.fill_null(column, ""), characters=PY_WHITESPACE)


def valid_seconds(column) -> pa.ChunkedArray:
    """Timestamps as `parse_timestamp` keeps them: NaN, infinite and negative values become null."""
    return pc.if_else(pc.and_(pc.is_finite(column), pc.greater_equal(column, 0)), column, None)


def one_line(text: str, limit: int) -> tuple[str, bool]:
    """`preprocessing.one_line`, with a shortcut for printable ASCII (no control or format characters to drop)."""
    if text.isascii() and text.isprintable():
        text = " ".join(text.split())
        return (text[:limit].rstrip(), True) if limit and len(text) > limit else (text, False)
    return preprocessing.one_line(text, limit)


def add_counted(skips: Skips, what: str, where: str, fix: str, count: int, repaired: str | None = None):
    """`count` skips of one reason at once (the first at `where`); with strict=True the first one raises."""
    skips.add(what, where, fix, repaired=repaired)
    skips.counts[what] += count - 1


def table_of_rows(rows, batch: int = 1_000_000) -> pa.Table:
    """`user_id`, `item_id`, `timestamp` (parsed seconds, null when missing/bad) and `locator` (the row's ordinal)
    from `(user, item, raw_timestamp, where)` tuples, built in batches so no Python object outlives its batch."""
    tables, columns = [], ([], [], [])
    for user, item, raw_time, _ in rows:
        columns[0].append(user)
        columns[1].append(item)
        columns[2].append(parse_timestamp(raw_time))
        if len(columns[0]) == batch:
            tables.append(pa.table(dict(zip(INTERACTIONS.names, columns)), schema=INTERACTIONS))
            columns = ([], [], [])
    tables.append(pa.table(dict(zip(INTERACTIONS.names, columns)), schema=INTERACTIONS))
    table = pa.concat_tables(tables)
    return table.append_column("locator", pa.array(np.arange(table.num_rows, dtype=np.int64)))


@dataclass
class JsonLines:
    """Reads the JSON-object lines of one `.jsonl[.gz]` file into columns, with the per-line rules of
    `read_text_lines` + `json.loads`: blank lines are skipped, bad UTF-8 is replaced and counted, lines that are not
    JSON objects are counted skips. Rows carry their 1-based `line` number.

    `fields` is the raw schema read by pyarrow; `from_arrow(table)` turns those raw columns into the output columns
    and `from_record(dict)` does the same for one line parsed by `json.loads` (any block that pyarrow rejects, e.g.
    a number where a string is expected, or bad bytes, is re-read line by line that way).
    """

    path: Path
    fields: pa.Schema
    from_arrow: object
    from_record: object
    output: pa.Schema
    skips: Skips

    def read(self) -> pa.Table:
        pieces, first_line, rest = [], 1, b""
        opener = gzip.open if str(self.path).endswith(".gz") else open
        with opener(self.path, "rb") as handle:
            while True:
                data = handle.read(BLOCK_BYTES)
                block = rest + data
                cut = block.rfind(b"\n") + 1 if data else len(block)
                block, rest = block[:cut], block[cut:]
                if block:
                    pieces += self._block(block, first_line)
                    first_line += block.count(b"\n")
                if not data:
                    break
        empty = pa.table({name: pa.array([], type=f.type) for name, f in zip(self.output.names, self.output)})
        pieces = [piece for piece in pieces if piece.num_rows] or [
            empty.append_column("line", pa.array([], pa.int64()))
        ]
        return pa.concat_tables(pieces)

    def _block(self, block: bytes, first_line: int) -> list[pa.Table]:
        table = self._fast(block, first_line)
        if table is not None:
            return [table]
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
        return self._lines(lines, first_line, top=True)

    def _lines(self, lines: list[bytes], first_line: int, top: bool = False) -> list[pa.Table]:
        """Bisect a rejected run of lines: 64 pieces at the top, then halves, down to single lines."""
        if len(lines) == 1:
            return self._python(lines[0], first_line)
        if not top:
            table = self._fast(b"\n".join(lines) + b"\n", first_line)
            if table is not None:
                return [table]
        step = -(-len(lines) // 64) if top else -(-len(lines) // 2)
        return [t for start in range(0, len(lines), step) for t in self._lines(lines[start : start + step], first_line + start)]  # fmt: skip

    def _fast(self, block: bytes, first_line: int) -> pa.Table | None:
        """The block through pyarrow, or None when any line needs the per-line rules."""
        lines = block.count(b"\n") + (not block.endswith(b"\n"))
        if block.count(b"\n{") + block.startswith(b"{") != lines:
            return None  # a line that does not start with "{": blank, an array, text, the tail of a broken line
        try:
            options = pj.ParseOptions(explicit_schema=self.fields, unexpected_field_behavior="ignore")
            raw = pj.read_json(io.BytesIO(block), parse_options=options)
            raw.validate(full=True)  # bad UTF-8 inside a string value
            if raw.num_rows != lines:
                return None  # two objects on one line: json.loads rejects it
            table = self.from_arrow(raw)
        except (pa.ArrowException, UnicodeDecodeError, ValueError):
            return None
        return table.append_column("line", pa.array(np.arange(first_line, first_line + lines, dtype=np.int64)))

    def _python(self, raw: bytes, number: int) -> list[pa.Table]:
        where, name = f"line {number} of {self.path.name}", self.path.name
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.skips.add(
                "lines that are not valid utf-8",
                where,
                f"re-encode {name} as utf-8",
                repaired="their bad bytes replaced",
            )
            text = raw.decode("utf-8", errors="replace")
        text = text.rstrip("\r\n")
        if not text.strip():
            return []
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            self.skips.add("lines that are not JSON objects", where, "re-download the file (it may be truncated)")
            return []
        row = {**self.from_record(record), "line": number}
        return [pa.Table.from_pylist([row], schema=self.output.append(pa.field("line", pa.int64())))]


@dataclass
class Events:
    """Valid, deduplicated interactions sorted by user (string order) then time (then file order): integer codes
    into `users` / `items` (Arrow string arrays) and float timestamps in seconds."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    users: pa.Array
    items: pa.Array

    def take(self, keep: np.ndarray) -> Events:
        return Events(self.user[keep], self.item[keep], self.timestamp[keep], self.users, self.items)

    def per_user(self) -> tuple[np.ndarray, np.ndarray]:
        """(user codes in order, start offset of each user's run, plus the end)."""
        starts = np.flatnonzero(np.r_[True, self.user[1:] != self.user[:-1]]) if len(self.user) else np.array([], int)
        return self.user[starts], np.r_[starts, len(self.user)]


def valid_events(table: pa.Table, known_items: pa.Array, skips: Skips, locate) -> tuple[Events, int]:
    """Drop and count rows with an unknown item, no user or a bad timestamp (in row order: the first reason found
    first, as the row-by-row loop did), then keep each (user, item)'s first interaction in time order.
    `locate(locators)` names rows for the report. Returns the events and the number of repeats dropped."""
    known = pc.is_in(table["item_id"], value_set=known_items).to_numpy(zero_copy_only=False)
    has_user = pc.fill_null(pc.not_equal(table["user_id"], ""), False).to_numpy(zero_copy_only=False)
    timestamp = table["timestamp"].to_numpy(zero_copy_only=False)  # nulls become NaN
    with np.errstate(invalid="ignore"):
        good_time = np.isfinite(timestamp) & (timestamp >= 0)
    reasons = [
        (~known, "interactions with unknown item ids", "add the item to the item file or drop the row"),
        (known & ~has_user, "interactions without a user id", "fill in the user id or drop the row"),
        (
            known & has_user & ~good_time,
            "interactions with a missing, NaN or negative timestamp",
            "give every row a timestamp >= 0",
        ),
    ]
    found = sorted((int(np.argmax(mask)), int(mask.sum()), what, fix) for mask, what, fix in reasons if mask.any())
    where = locate([table["locator"][first].as_py() for first, *_ in found]) if found else []
    for (_, count, what, fix), place in zip(found, where):
        add_counted(skips, what, place, fix, count)
    rows = np.flatnonzero(known & has_user & good_time)
    users = pc.dictionary_encode(table["user_id"].take(rows).combine_chunks())
    items = pc.dictionary_encode(table["item_id"].take(rows).combine_chunks())
    by_rank = pc.sort_indices(users.dictionary)  # user codes in string (= code point) order
    rank = np.empty(len(users.dictionary), dtype=np.int64)
    rank[by_rank.to_numpy()] = np.arange(len(users.dictionary))
    user, item, timestamp = rank[users.indices.to_numpy()], items.indices.to_numpy().astype(np.int64), timestamp[rows]
    order = np.lexsort((timestamp, user))  # stable: equal times keep the file order
    user, item, timestamp = user[order], item[order], timestamp[order]
    _, first = np.unique(user * len(items.dictionary) + item, return_index=True)  # first of each (user, item)
    keep = np.sort(first)
    events = Events(user[keep], item[keep], timestamp[keep], users.dictionary.take(by_rank), items.dictionary)
    return events, len(user) - len(keep)


def k_core(events: Events, min_user: int, min_item: int) -> Events:
    """Iteratively drop items with < `min_item` and users with < `min_user` interactions (and users left with none)
    until stable: `preprocessing.k_core` on codes."""
    while True:
        item_counts = np.bincount(events.item, minlength=len(events.items))
        keep = item_counts[events.item] >= min_item
        user_counts = np.bincount(events.user[keep], minlength=len(events.users))
        keep &= user_counts[events.user] >= max(min_user, 1)
        if keep.all():
            return events
        events = events.take(keep)
