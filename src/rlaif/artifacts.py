"""RunDir: the one place that knows the on-disk layout of a run and its manifest.

    runs/<name>/
      config.yaml          the resolved config of the last stage started
      manifest.json        per stage: status, fingerprint, upstream, timings, outputs
      sft/ pairs/ labels/ reward/ rl/ eval/ ...   one folder per stage (rlaif.pipeline names them)

A stage reads another's outputs only through `RunDir.artifact(stage, name)`: the producer must have
finished and must declare the artifact in the registry (rlaif.pipeline), so the inputs of every stage
are visible in one place.

A stage's *fingerprint* hashes its own config section, the fingerprint and run_id (new at every
finish) of each stage it reads, and the data files it reads. `rlaif run` skips a stage whose
fingerprint matches a finished entry whose recorded outputs are all still on disk; anything else
(a changed setting, a rerun upstream stage, a deleted output) makes it stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlaif import pipeline
from rlaif.config import DatasetConfig, PipelineConfig, section_hash, to_yaml


class StageInputError(RuntimeError):
    """An upstream artifact is missing, unfinished or stale."""


def is_main_process() -> bool:
    """Rank 0 under torchrun / accelerate launch, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every process of a multi-process launch (no-op in a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        from rlaif.models import compute_device

        # cpu=True on a CPU-only machine: otherwise accelerate sees no GPU and no distributed run
        PartialState(cpu=compute_device().type == "cpu").wait_for_everyone()


def process_rank() -> tuple[int, int]:
    """(rank, number of processes) of this launch: (0, 1) in a plain single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def gather_objects(items: list) -> list:
    """Every process's list, concatenated in rank order, on every process (`items` itself in one process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return list(items)
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from rlaif.models import compute_device

    PartialState(cpu=compute_device().type == "cpu")  # the process group gather_object runs on
    return gather_object(items)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a kill never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def dataset_fingerprint(ds: DatasetConfig) -> str:
    """Local files are hashed by content (by size and mtime above 64 MiB); Hub sources by name."""
    h = hashlib.sha256(json.dumps([ds.path, ds.hub_config, ds.split, ds.fields, ds.limit, ds.skip]).encode())
    path = Path(ds.path).expanduser()
    if ds.is_local and path.is_file():
        stat = path.stat()
        if stat.st_size > 64 * 2**20:
            h.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        else:
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class StageRun:
    """A stage in progress: where it writes and what identifies its inputs."""

    stage: str
    dir: Path
    fingerprint: str
    started: float
    resumed: bool
    """True when partial outputs of an interrupted run with the same fingerprint were kept."""


class RunDir:
    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.root = cfg.run_dir
        self.manifest_path = self.root / "manifest.json"

    # --- layout ---
    def stage_dir(self, stage: str) -> Path:
        return self.root / pipeline.stage(stage).folder

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            return {"stages": {}}
        return json.loads(self.manifest_path.read_text())

    def entry(self, stage: str) -> dict | None:
        return self.manifest()["stages"].get(stage)

    def identity(self, stage: str) -> str:
        """A finished stage's settings and this run of it (what downstream fingerprints hash)."""
        return _identity(self.entry(stage))

    def finished(self, stage: str) -> bool:
        return (self.entry(stage) or {}).get("status") == "done"

    def metrics(self, stage: str, name: str = "metrics.json") -> dict:
        """A stage's metrics file, {} when the stage has not written it."""
        path = self.stage_dir(stage) / name
        return json.loads(path.read_text()) if path.exists() else {}

    def artifact(self, stage: str, name: str, by: str = "") -> Path:
        """Path of an output `name` that `stage` declares in the registry, after checking that the stage
        finished and the output exists; a clear StageInputError otherwise."""
        if name not in pipeline.stage(stage).artifacts:
            raise StageInputError(
                f"stage {by or '?'!r} reads {stage}/{name}, which stage {stage!r} does not declare as an artifact "
                f"(declared: {', '.join(pipeline.stage(stage).artifacts) or 'none'}); declare it in rlaif.pipeline"
            )
        self.require(stage, by)
        path = self.stage_dir(stage) / name
        if not path.exists():
            raise StageInputError(f"{path} is missing though stage {stage!r} finished; rerun it (`--force`)")
        return path

    # --- fingerprints ---
    def fingerprint(self, stage: str, section: Any, upstream: tuple[str, ...], data: list[DatasetConfig]) -> str:
        parts = {
            "stage": stage,
            "config": section_hash(section),
            "seed": self.cfg.seed,
            # An upstream rerun (even a forced one with the same settings) gets a new run_id, so
            # everything downstream of it goes stale too.
            "upstream": {name: _identity(self.require(name, stage)) for name in upstream},
            "data": [dataset_fingerprint(ds) for ds in data],
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def require(self, upstream: str, by: str) -> dict:
        """The manifest entry of a finished upstream stage, or a clear error saying what to run."""
        entry = self.entry(upstream)
        if entry is None or entry.get("status") != "done":
            state = "has not run" if entry is None else f"is {entry.get('status')}"
            command = pipeline.stage(upstream)
            arm = f" --arm {command.arm}" if command.arm == "rlhf" else ""
            flag = f" --{command.flag}" if command.flag else ""
            raise StageInputError(
                f"stage {by!r} needs the output of {upstream!r}, which {state} in {self.root}; "
                f"run `rlaif {command.cli} CONFIG{arm}{flag}` first (or `rlaif run CONFIG`)"
            )
        return entry

    def is_fresh(self, stage: str, fingerprint: str) -> bool:
        """Finished with this fingerprint, and every output it recorded is still on disk."""
        entry = self.entry(stage)
        if not entry or entry.get("status") != "done" or entry.get("fingerprint") != fingerprint:
            return False
        out = self.stage_dir(stage)
        return out.is_dir() and all((out / name).exists() for name in entry.get("outputs", []))

    # --- lifecycle ---
    def begin(
        self,
        stage: str,
        section: Any,
        upstream: tuple[str, ...] = (),
        data: list[DatasetConfig] = (),
        fingerprint: str | None = None,
        keep_caches: bool = True,
    ) -> StageRun:
        """Mark `stage` running; keep its partial outputs only when they were made with exactly these
        inputs and settings (a resume), wipe them otherwise, except the caches the registry says it
        keeps (Stage.keeps) unless `keep_caches` is False (`--force`). `fingerprint`: when the caller
        computed it already (rlaif.stages.run_stage); else it is computed from section, upstream and data."""
        if fingerprint is None:
            fingerprint = self.fingerprint(stage, section, upstream, list(data))
        out = self.stage_dir(stage)
        previous = self.entry(stage) or {}
        resumed = previous.get("fingerprint") == fingerprint and previous.get("status") != "done" and out.exists()
        barrier()  # every rank has read the old entry before rank 0 rewrites it
        if is_main_process():
            if out.exists() and not resumed:
                keeps = next((s.keeps for s in pipeline.STAGES if s.name == stage), ()) if keep_caches else ()
                _wipe(out, keep=keeps)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.root / "config.yaml", to_yaml(self.cfg))
            self._update(
                stage,
                {
                    "status": "running",
                    "fingerprint": fingerprint,
                    "config_hash": section_hash(section),
                    "upstream": list(upstream),
                    "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "attempts": previous.get("attempts", 0) + 1,
                    "error": None,
                },
            )
        barrier()
        return StageRun(stage, out, fingerprint, time.time(), resumed)

    def finish(self, run: StageRun, metrics: dict | None = None) -> Path:
        if is_main_process():
            if metrics is not None:
                write_json(run.dir / "metrics.json", metrics)
            self._update(
                run.stage,
                {
                    "status": "done",
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "seconds": round(time.time() - run.started, 2),
                    "run_id": uuid.uuid4().hex[:12],
                    # checkpoints/ may be deleted to save space without making the stage stale
                    "outputs": sorted(
                        p.name for p in run.dir.iterdir() if not p.name.startswith(".") and p.name != "checkpoints"
                    ),
                },
            )
        return run.dir

    def fail(self, stage: str, error: BaseException) -> None:
        """Record why a stage stopped; its partial outputs stay for a resume with the same settings."""
        if is_main_process() and (self.entry(stage) or {}).get("status") == "running":
            self._update(stage, {"status": "failed", "error": f"{type(error).__name__}: {error}"[:2000]})

    def _update(self, stage: str, fields: dict) -> None:
        manifest = self.manifest()
        manifest["stages"].setdefault(stage, {}).update(fields)
        write_json(self.manifest_path, manifest)


def _wipe(folder: Path, keep: tuple[str, ...] = ()) -> None:
    """Delete a stale stage's outputs, except the caches its registry entry keeps (Stage.keeps)."""
    if not keep:
        shutil.rmtree(folder)
        return
    for path in folder.iterdir():
        if path.name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _identity(entry: dict) -> str:
    """What downstream fingerprints hash of a finished upstream stage: its settings and this run of it."""
    return f"{entry['fingerprint']}:{entry.get('run_id', '')}"
