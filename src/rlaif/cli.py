"""`rlaif <stage> CONFIG [--set a.b=c ...]`, `rlaif run CONFIG`, `rlaif prepare [MODEL ...]`.

Every stage command comes from the registry (rlaif.pipeline): arm twins share a command and take
`--arm`, a stage with a `flag` is reached as `rlaif <command> --<flag>`, and a stage's read-only
options become flags of its command.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing

from rlaif import pipeline
from rlaif.artifacts import StageInputError
from rlaif.config import ConfigError, DataConfig, HumanComparisonsConfig, PipelineConfig, describe, load_config
from rlaif.data import DataError
from rlaif.labelers.base import LabelingIncomplete
from rlaif.models import ModelLoadError
from rlaif.rl import NonFiniteLossError
from rlaif.stages import run_stage

USER_ERRORS = (
    ConfigError,
    DataError,
    ModelLoadError,
    StageInputError,
    FileNotFoundError,
    LabelingIncomplete,
    NonFiniteLossError,
)


def stage_help(stage: pipeline.Stage) -> str:
    if stage.section is None:
        return "This stage has no settings of its own."
    section_cls = section_class(stage.section)
    lines = [f"Fields of section `{stage.section}` (override with --set {stage.section}.FIELD=VALUE):"]
    lines += describe(section_cls, f"{stage.section}.")
    lines += ["", "Shared fields of section `data`:"] + describe(DataConfig, "data.")
    if any(pipeline.reads_human_split(s) for s in pipeline.commands()[stage.cli]):  # stages measured against people
        lines += ["", "Shared fields of section `human`:"] + describe(HumanComparisonsConfig, "human.")
    return "\n".join(lines)


def section_class(name: str) -> type:
    """The dataclass of a PipelineConfig section, also for a section that defaults to None (dpo)."""
    hint = typing.get_type_hints(PipelineConfig)[name]
    return next(t for t in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(t))


def _option_dest(flag: str) -> str:
    return flag.replace("-", "_")


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
    for command, stages in pipeline.commands().items():
        main_stages = [s for s in stages if s.flag is None]
        first = main_stages[0]
        p = sub.add_parser(
            command,
            help=first.summary,
            description=first.summary,
            epilog=stage_help(first),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_config_args(p)
        p.add_argument("--force", action="store_true", help="rerun even when the outputs are up to date")
        arms = sorted({s.arm for s in main_stages if s.arm is not None})
        if len(arms) > 1:
            p.add_argument("--arm", choices=arms, default="rlaif", help="rlaif: AI labels; rlhf: human comparisons")
        for s in stages:
            if s.flag is not None:
                p.add_argument(f"--{s.flag}", dest=f"flag_{_option_dest(s.flag)}", action="store_true", help=s.summary)
        for flag, text in dict(o for s in main_stages for o in s.options).items():
            p.add_argument(f"--{flag}", dest=_option_dest(flag), action="store_true", help=text)
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


def _chosen_stage(args) -> tuple[pipeline.Stage, dict]:
    """The stage a command line names, and the read-only options it set."""
    stages = pipeline.commands()[args.command]
    flagged = [s for s in stages if s.flag is not None and getattr(args, f"flag_{_option_dest(s.flag)}", False)]
    if flagged:
        return flagged[0], {}
    stage = pipeline.stage_for_command(args.command, getattr(args, "arm", "rlaif"))
    options = {_option_dest(flag): True for flag, _ in stage.options if getattr(args, _option_dest(flag), False)}
    return stage, options


def _not_enabled_error(stage: pipeline.Stage, cfg: PipelineConfig, config_path: str) -> ConfigError:
    missing = [s for s in (stage.section, *stage.requires) if s is not None and getattr(cfg, s, None) is None]
    if not missing:  # the sections are there; the stage's own condition is not met
        return ConfigError(stage.when_unmet)
    arm = f"; the {stage.arm} arm is off" if stage.arm else ""
    return ConfigError(f"section `{missing[0]}` is not set in {config_path}{arm}")


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
            for stage in pipeline.STAGES:
                if stage.enabled(cfg):
                    run_stage(stage, cfg)
            print(f"[rlaif] run: all stages done in {time.time() - t0:.1f}s; outputs in {cfg.run_dir}", flush=True)
        else:
            stage, options = _chosen_stage(args)
            if not stage.enabled(cfg):
                raise _not_enabled_error(stage, cfg, args.config)
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
