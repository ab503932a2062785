"""Row readers for local files and Hub datasets, each row tagged with where it came from.

Every row carries a location (`file.jsonl:17`, `trl-lib/tldr[train] row 17`) so that a bad row
stops the run with an error naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlaif.config import DatasetConfig


class DataError(ValueError):
    """Malformed input data; the message names the file, the row and the field."""


Row = tuple[str, dict[str, Any]]  # (location, raw row)


def read_rows(ds: DatasetConfig) -> Iterator[Row]:
    """Rows of a local file or Hub dataset, after the config's split filter (not yet skip/limit)."""
    rows = _read_local(Path(ds.path).expanduser()) if ds.is_local else _read_hub(ds)
    for where, row in rows:
        if ds.is_local and ds.split is not None and "split" in row and row["split"] != ds.split:
            continue
        yield where, row


def _read_local(path: Path) -> Iterator[Row]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    name = path.name.lower().removesuffix(".gz")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    if name.endswith(".jsonl"):
        yield from _read_jsonl(path, opener)
    elif name.endswith(".json"):
        yield from _read_json(path, opener)
    elif name.endswith(".csv"):
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):  # line 1 is the header
                yield f"{path}:{i}", row
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path} row {i}", row
    else:
        raise DataError(f"{path}: unknown file type; use .jsonl, .json, .parquet or .csv (optionally .gz)")


def _read_jsonl(path: Path, opener) -> Iterator[Row]:
    with opener(path, "rb") as fh:
        for i, raw in enumerate(fh, start=1):
            where = f"{path}:{i}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: line is not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def _read_json(path: Path, opener) -> Iterator[Row]:
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]} style
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of objects")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path} item {i}: expected a JSON object, got {type(row).__name__}")
        yield f"{path} item {i}", row


def _read_hub(ds: DatasetConfig) -> Iterator[Row]:
    import datasets

    split = ds.split or "train"
    try:
        hub = datasets.load_dataset(ds.path, ds.hub_config, split=split)
    except Exception as e:  # offline, unknown name, unknown config: the library raises many kinds
        raise DataError(
            f"cannot load Hub dataset {ds.path!r} (config {ds.hub_config!r}, split {split!r}): "
            f"{type(e).__name__}: {str(e)[:300]}. Without a network, point `path` at a local file."
        ) from None
    for i, row in enumerate(hub):
        yield f"{ds.path}[{split}] row {i}", row
