"""`rlaif <stage> CONFIG [--set a.b=c ...]`, `rlaif run CONFIG`, `rlaif prepare [MODEL ...]`."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from rlaif.artifacts import RunDir, StageInputError
from rlaif.config import ConfigError, DataConfig, PipelineConfig, describe, load_config
from rlaif.data import DataError
from rlaif.labelers.base import LabelingIncomplete
from rlaif.models import ModelLoadError
from rlaif.rl import NonFiniteLossError


@dataclass(frozen=True)
class Stage:
    name: str
    """Manifest key, e.g. `reward` or `reward_rlhf` (the RLHF arm of the same command)."""
    module: str
    """Module with run(cfg, rundir, stage), upstream(cfg, stage) and data_sources(cfg, stage)."""
    section: str
    """Config section hashed into the fingerprint."""
    summary: str
    command: str = ""
    """CLI command (default: name); arm stages share their command and take `--arm rlhf`."""
    arm: str = "rlaif"
    requires: tuple[str, ...] = ()
    """Other sections that must be set too (rl_rlhf shares `rl` but needs the RLHF arm's reward_rlhf)."""
    subcommand: bool = True
    """False: no command of its own, reached through an option (label_alignment: `label --eval-alignment`)."""
    when: Callable[[PipelineConfig], bool] | None = None
    """An extra condition for `rlaif run` (label_alignment runs only when human comparison sets are listed)."""

    @property
    def cli(self) -> str:
        return self.command or self.name

    def enabled(self, cfg: PipelineConfig) -> bool:
        sections = all(getattr(cfg, s, None) is not None for s in (self.section, *self.requires))
        return sections and (self.when is None or self.when(cfg))


# Pipeline order: `rlaif run` walks this list, skipping disabled arms and up-to-date stages.
STAGES = [
    Stage("sft", "rlaif.stages.sft", "sft", "supervised fine-tuning of the policy on posts + reference summaries"),
    Stage("pairs", "rlaif.stages.pairs", "pairs", "two sampled summaries per prompt-pool post from the SFT policy"),
    Stage(
        "label",
        "rlaif.stages.label",
        "label",
        "AI preference labels for the pairs (LLM judge, both orders, soft labels)",
    ),
    # The labeler's agreement with human choices: the report puts it next to the labels and win rates.
    Stage(
        "label_alignment",
        "rlaif.stages.label",
        "label",
        "labeler agreement with human comparison sets (label.alignment_*)",
        subcommand=False,
        when=lambda cfg: bool(cfg.label.alignment_summarize or cfg.label.alignment_dialogue),
    ),
    Stage("reward", "rlaif.stages.reward", "reward", "reward model on AI preference labels (RLAIF arm)"),
    Stage(
        "rl", "rlaif.stages.rl", "rl", "PPO of the SFT policy against the RLAIF reward model (or the direct AI reward)"
    ),
    Stage(
        "reward_rlhf",
        "rlaif.stages.reward",
        "reward_rlhf",
        "reward model on human comparisons or reference-preferred pairs (RLHF arm)",
        command="reward",
        arm="rlhf",
    ),
    Stage(
        "rl_rlhf",
        "rlaif.stages.rl",
        "rl",
        "PPO of the SFT policy against the RLHF reward model",
        command="rl",
        arm="rlhf",
        requires=("reward_rlhf",),
    ),
    # evaluate and report stay last: they read every stage above.
    Stage(
        "evaluate",
        "rlaif.stages.evaluate",
        "evaluate",
        "win rates (LLM judge, both orders), RM scores, lengths, ROUGE-L on held-out posts",
    ),
    Stage("report", "rlaif.stages.report", "report", "report.html and report.md with every stage's metrics and plots"),
]
STAGE_BY_NAME = {s.name: s for s in STAGES}


def stage_for(command: str, arm: str) -> Stage:
    for stage in STAGES:
        if stage.subcommand and stage.cli == command and stage.arm == arm:
            return stage
    raise ConfigError(f"`rlaif {command}` has no {arm!r} arm")


USER_ERRORS = (
    ConfigError,
    DataError,
    ModelLoadError,
    StageInputError,
    FileNotFoundError,
    LabelingIncomplete,
    NonFiniteLossError,
)


def stage_help(stage: Stage) -> str:
    section_cls = PipelineConfig.__dataclass_fields__[stage.section].default_factory
    lines = [f"Fields of section `{stage.section}` (override with --set {stage.section}.FIELD=VALUE):"]
    lines += describe(type(section_cls()), f"{stage.section}.")
    lines += ["", "Shared fields of section `data`:"] + describe(DataConfig, "data.")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    top_fields = [line for line in describe(PipelineConfig) if line.startswith(("  name", "  output_dir", "  seed"))]
    parser = argparse.ArgumentParser(
        prog="rlaif",
        description="RLAIF (and the RLHF baseline) for TL;DR summarization, one stage per command.",
        epilog="Top-level config fields:\n"
        + "\n".join(top_fields)
        + "\n\nSee `rlaif STAGE --help` for each stage's fields.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        if stage.arm != "rlaif" or not stage.subcommand:
            continue  # reached through --arm on the command of its RLAIF twin, or an option
        p = sub.add_parser(
            stage.cli,
            help=stage.summary,
            description=stage.summary,
            epilog=stage_help(stage),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_config_args(p)
        p.add_argument("--force", action="store_true", help="rerun even when the outputs are up to date")
        arms = sorted({s.arm for s in STAGES if s.cli == stage.cli and s.subcommand})
        if len(arms) > 1:
            p.add_argument("--arm", choices=arms, default="rlaif", help="rlaif: AI labels; rlhf: human comparisons")
        if stage.cli == "label":
            p.add_argument(
                "--eval-alignment",
                action="store_true",
                help="judge the human comparison sets in label.alignment_* and report agreement; labels no pairs",
            )
        if stage.cli == "reward":
            p.add_argument(
                "--eval-only",
                action="store_true",
                help="score the saved reward model on the section's eval_comparisons; trains nothing",
            )
    p = sub.add_parser("run", help="run every stage in order, skipping those already up to date")
    _add_config_args(p)
    p = sub.add_parser("config", help="print the resolved config (after overrides) as YAML")
    _add_config_args(p)
    p = sub.add_parser("prepare", help="build the embedded models' cached folders (done by scripts/setup.sh)")
    p.add_argument("models", nargs="*", default=["smollm2-135m", "tiny-random"])
    return parser


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="pipeline YAML, e.g. configs/demo.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set sft.learning_rate=1e-4 (repeatable)",
    )


def run_stage(stage: Stage, cfg: PipelineConfig, force: bool = False, **options) -> bool:
    """Run one stage unless its finished outputs match its current fingerprint. True if it ran.
    `options` (e.g. eval_only=True) go to the stage's run() and bypass the manifest: such a run
    only reads the stage's outputs."""
    module = importlib.import_module(stage.module)
    rundir = RunDir(cfg)
    if options:
        module.run(cfg, rundir, stage.name, **options)
        return True
    upstream, data = module.upstream(cfg, stage.name), list(module.data_sources(cfg, stage.name))
    fingerprint = rundir.fingerprint(stage.name, getattr(cfg, stage.section), upstream, data)
    if not force and rundir.is_fresh(stage.name, fingerprint):
        print(
            f"[rlaif] {stage.name}: up to date in {rundir.stage_dir(stage.name)}, skipped (--force reruns it)",
            flush=True,
        )
        return False
    try:
        module.run(cfg, rundir, stage.name)
    except Exception as e:
        rundir.fail(stage.name, e)
        raise
    return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "prepare":
            from rlaif.models import embedded_folder

            for name in args.models:
                print(f"{name}: {embedded_folder(name)}")
            return 0
        cfg = load_config(args.config, args.overrides)
        if args.command == "config":
            from rlaif.config import to_yaml

            print(to_yaml(cfg), end="")
        elif args.command == "run":
            t0 = time.time()
            for stage in STAGES:
                if stage.enabled(cfg):
                    run_stage(stage, cfg)
            print(f"[rlaif] run: all stages done in {time.time() - t0:.1f}s; outputs in {cfg.run_dir}", flush=True)
        else:
            stage = stage_for(args.command, getattr(args, "arm", "rlaif"))
            if getattr(args, "eval_alignment", False):  # a stage of its own, with the same manifest check
                stage = STAGE_BY_NAME["label_alignment"]
                if not stage.enabled(cfg):
                    raise ConfigError(
                        "label.alignment_summarize and label.alignment_dialogue are both empty; "
                        "list human comparison files there to use --eval-alignment"
                    )
            elif not stage.enabled(cfg):
                raise ConfigError(f"section `{stage.section}` is not set in {args.config}; the {stage.arm} arm is off")
            options = {"eval_only": True} if getattr(args, "eval_only", False) else {}
            run_stage(stage, cfg, force=args.force, **options)
    except USER_ERRORS as e:
        print(f"rlaif: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlaif: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
