"""Append-only JSONL caches and logs that survive a kill at any point.

A killed process can leave half a line at the end of a file. `AppendLog` cuts that partial tail
before reopening the file for appends, so the next row never lands glued onto it, and returns the
rows already complete; a resumed stage skips their keys and writes only what is missing. A log that
must end where a resumed run restarts (the RL stage's per-step logs, cut back to its checkpoint)
passes `keep`, and the rows it rejects are dropped from the file too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    """Every row of a finished JSONL file; an error names the file and line of a bad row."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not valid JSON ({e.msg} at column {e.colno})") from None
    return rows


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Write a whole JSONL file at once, through a temp file and a rename: a kill leaves the old file
    or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_complete(path: Path) -> list[dict]:
    """Rows of a JSONL file that a kill may have cut mid-line: the partial last line is left out
    (the file itself is not changed; AppendLog cuts it when it reopens the file for appends)."""
    return _complete_rows(Path(path))[0]


def _complete_rows(path: Path) -> tuple[list[dict], int]:
    """Rows of the complete lines and the byte length they span (a partial last line excluded)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # bytes after the last newline belong to an unfinished row
    rows = []
    for i, line in enumerate(data[:end].splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{i}: not valid JSON ({e.msg} at column {e.colno}); delete the file to recompute it"
                ) from None
    return rows, end


class AppendLog:
    """`with AppendLog(path) as log:` -> `log.rows` (done so far), `log.append(row)` (flushed at once).

    `keep(row)`, when given, decides which complete rows of an earlier run stay: the others are
    removed from the file (rewritten through a temp file and a rename) before appending resumes."""

    def __init__(self, path: Path, keep: Callable[[dict], bool] | None = None):
        self.path = Path(path)
        self.keep = keep
        self.rows: list[dict] = []

    def __enter__(self) -> AppendLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.rows, end = _complete_rows(self.path)
            kept = [row for row in self.rows if self.keep(row)] if self.keep is not None else self.rows
            if len(kept) < len(self.rows):
                self.rows = kept
                write_jsonl(self.path, kept)
            elif end < self.path.stat().st_size:
                os.truncate(self.path, end)
        self._fh = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, row: dict) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.rows.append(row)

    def extend(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.append(row)

    def __exit__(self, *exc) -> None:
        self._fh.close()
