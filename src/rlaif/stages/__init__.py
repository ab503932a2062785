"""One module per stage, each with `run(ctx: StageContext) -> dict` (the stage's metrics).

`run_stage` owns the bookkeeping every stage shares: it computes the stage's fingerprint once (its
config section, the identity of its upstream stages, the content of its data files, the settings
of other sections it reads; see
rlaif.artifacts), skips a stage whose finished outputs match it, marks it running (wiping stale
partial outputs, keeping a resumable one), hands the stage a `StageContext`, writes its metrics and
marks it done, or failed with the error. What a stage reads and writes is declared in rlaif.pipeline.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlaif.artifacts import RunDir, StageRun, barrier
from rlaif.config import ConfigError, PipelineConfig
from rlaif.pipeline import Stage


@dataclass
class StageContext:
    """What a stage's run() gets: the config, the run folder, its own registry entry and output folder."""

    cfg: PipelineConfig
    rundir: RunDir
    stage: Stage
    out: StageRun | None
    """None for a read-only option run (ctx.options), which leaves the manifest alone."""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def section(self) -> Any:
        """The stage's own config section (e.g. cfg.reward_rlhf for stage reward_rlhf)."""
        return getattr(self.cfg, self.stage.section) if self.stage.section else None

    @property
    def dir(self) -> Path:
        return self.out.dir if self.out is not None else self.rundir.stage_dir(self.stage.name)

    @property
    def resumed(self) -> bool:
        return bool(self.out and self.out.resumed)

    def artifact(self, stage: str, name: str) -> Path:
        """An output `name` of an upstream stage, checked (see RunDir.artifact)."""
        return self.rundir.artifact(stage, name, by=self.stage.name)


def run_stage(stage: Stage, cfg: PipelineConfig, force: bool = False, **options) -> bool:
    """Run one stage unless its finished outputs match its current fingerprint. True if it ran.
    `options` (e.g. eval_only=True) go to the stage in ctx.options and bypass the manifest: such a
    run only reads the stage's outputs."""
    module = importlib.import_module(stage.module)
    rundir = RunDir(cfg)
    if stage.single_process and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Several ranks would each append the same rows; refused rather than deduplicated.
        raise ConfigError(
            f"stage {stage.name} runs in one process; start it with `rlaif {stage.cli} CONFIG`, not accelerate launch"
        )
    if options:
        module.run(StageContext(cfg, rundir, stage, None, options))
        return True
    section = stage.hashed_settings(cfg)
    upstream = stage.upstream_of(cfg)
    fingerprint = rundir.fingerprint(stage.name, section, upstream, stage.data_of(cfg))
    if not force and rundir.is_fresh(stage.name, fingerprint):
        print(
            f"[rlaif] {stage.name}: up to date in {rundir.stage_dir(stage.name)}, skipped (--force reruns it)",
            flush=True,
        )
        return False
    out = rundir.begin(stage.name, section, upstream, fingerprint=fingerprint, keep_caches=not force)
    try:
        metrics = module.run(StageContext(cfg, rundir, stage, out))
    except Exception as e:
        rundir.fail(stage.name, e)
        raise
    rundir.finish(out, metrics)
    barrier()  # processes that did no work (evaluate and report run on rank 0) wait for the files
    return True
