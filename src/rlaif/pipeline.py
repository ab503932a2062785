"""The pipeline's shape, declared once: every stage, what it reads and writes, its arm, and which
policy it yields as an evaluated system.

The CLI's commands, `rlaif run`'s order, the fingerprints (upstream stages and data files), the
artifacts one stage may read of another, evaluate's systems and reward models, and the report's
sections all come from `STAGES`. Adding a method is one entry here, one module with
`run(ctx) -> metrics` (see rlaif.stages) and one config section.

A stage's `upstream` and `data` may depend on the config (the reward model reads the AI labels only
when it trains on them), so they are given as functions of (config, stage) where they do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rlaif.config import DatasetConfig, PipelineConfig

ARMS = ("rlaif", "rlhf")
"""rlaif: AI feedback (labels, or the labeler in the loop); rlhf: human comparisons."""


@dataclass(frozen=True)
class Stage:
    name: str
    """Manifest key; for a policy also its system name in `evaluate` (e.g. `rl_rlhf`)."""
    module: str
    """Module with `run(ctx: StageContext) -> dict` (the stage's metrics)."""
    section: str | None
    """Config section hashed into the fingerprint and given to run() as `ctx.section`; None: no settings."""
    folder: str
    """Output folder under the run folder."""
    summary: str
    """One line for `--help`."""
    artifacts: tuple[str, ...] = ()
    """Outputs other stages may read (RunDir.artifact); the rest of the folder is private to the stage."""
    upstream: tuple[str, ...] | Callable[[PipelineConfig, Stage], tuple[str, ...]] = ()
    """Stages whose artifacts this one reads; their identity goes into its fingerprint."""
    data: Callable[[PipelineConfig, Stage], list[DatasetConfig]] | None = None
    """Data files this stage reads (hashed by content into the fingerprint)."""
    settings: Callable[[PipelineConfig, Stage], dict[str, Any]] | None = None
    """Settings outside its own section that the stage reads (e.g. the `human` split), hashed into
    its fingerprint, so changing them reruns it."""
    command: str = ""
    """CLI command; "" = the name. Arm twins share one command (`--arm`)."""
    flag: str | None = None
    """`rlaif <command> --<flag>` runs this stage instead of the command's own one."""
    arm: Literal["rlaif", "rlhf"] | None = None
    """Arm stages of one command share it and take `--arm`."""
    requires: tuple[str, ...] = ()
    """Other config sections that must be set for the stage to exist (rl_rlhf needs reward_rlhf)."""
    when: Callable[[PipelineConfig], bool] | None = None
    """An extra condition for the stage to exist in a config."""
    when_unmet: str = ""
    """The error `rlaif <command>` gives when `when` does not hold: what to set."""
    role: Literal["policy", "reward_model"] | None = None
    """`policy`: an evaluated system (artifact `model`, decoded by evaluate, or `summaries.jsonl`, its
    own summaries of the evaluation posts); `reward_model`: scores every system in evaluate."""
    label: str = ""
    """The stage's name in the report: a policy's name in the tables (`RL (RLAIF)`)."""
    reward: str | None = None
    """A policy's own reward model: the stage it was optimised against (its scores there are optimistic)."""
    report: str | None = "generic"
    """Report section that draws this stage's outputs: sft, label, reward, rl or generic; None: none
    (evaluate is the report's headline, rlaif.report.results)."""
    single_process: bool = False
    """Inference that appends rows: several ranks would write them twice, so a multi-process launch is refused."""
    options: tuple[tuple[str, str], ...] = ()
    """(flag, help) of read-only uses of the stage's outputs: run() gets them in ctx.options and the
    manifest is left alone (`rlaif reward --eval-only`)."""

    @property
    def cli(self) -> str:
        return self.command or self.name

    def enabled(self, cfg: PipelineConfig) -> bool:
        """Whether this config has the stage (its sections are set and `when` holds)."""
        sections = [s for s in (self.section, *self.requires) if s is not None]
        if not all(getattr(cfg, s, None) is not None for s in sections):
            return False
        return self.when is None or self.when(cfg)

    def upstream_of(self, cfg: PipelineConfig) -> tuple[str, ...]:
        return self.upstream(cfg, self) if callable(self.upstream) else self.upstream

    def data_of(self, cfg: PipelineConfig) -> list[DatasetConfig]:
        return list(self.data(cfg, self)) if self.data is not None else []

    def settings_of(self, cfg: PipelineConfig) -> dict[str, Any]:
        return self.settings(cfg, self) if self.settings is not None else {}

    @property
    def writes_summaries(self) -> bool:
        """A policy that writes its own summaries of the evaluation posts instead of a model to decode."""
        return self.role == "policy" and "summaries.jsonl" in self.artifacts


# ----------------------------------------------------------------------------------------------
# What each stage reads, where it depends on the config


def _section(cfg: PipelineConfig, stage: Stage):
    return getattr(cfg, stage.section)


def _label_files(cfg: PipelineConfig) -> list[DatasetConfig]:
    from rlaif.config import DatasetConfig

    # The exemplars file is an input: editing it must make the labels stale.
    return [DatasetConfig(path=cfg.label.fewshot_file)] if cfg.label.fewshot_file else []


def _alignment_data(cfg: PipelineConfig, stage: Stage) -> list[DatasetConfig]:
    sets = list(cfg.label.alignment_summarize) + list(cfg.label.alignment_dialogue) + list(cfg.human.comparisons)
    return sets + _label_files(cfg)


def _human_settings(cfg: PipelineConfig, stage: Stage) -> dict[str, Any]:
    """The human split and how its prompts are cut: every stage measured on the held-out part reads
    them, and the reward stages train on the rest [H02]."""
    if not cfg.human.comparisons:
        return {}
    return {"human": cfg.human, "max_prompt_tokens": cfg.data.max_prompt_tokens, "prompt_tokenizer": cfg.sft.model}


def _measures_people(cfg: PipelineConfig) -> bool:
    return bool(cfg.label.alignment_summarize or cfg.label.alignment_dialogue or cfg.human.comparisons)


def _reward_upstream(cfg: PipelineConfig, stage: Stage) -> tuple[str, ...]:
    settings = _section(cfg, stage)
    needs = []
    if settings.model == "sft" or settings.source == "reference_preferred":
        needs.append("sft")
    if settings.source == "ai_labels":
        needs.append("label")
    return tuple(needs)


def _reward_data(cfg: PipelineConfig, stage: Stage) -> list[DatasetConfig]:
    settings = _section(cfg, stage)
    sources = list(settings.comparisons) if settings.source == "human" else []
    sources += cfg.human.comparisons  # the held-out part is measured; the rest may be trained on
    if settings.source == "reference_preferred" or settings.normalize:
        sources += cfg.data.reference_posts
    return sources + list(settings.eval_comparisons)


def uses_direct_reward(cfg: PipelineConfig, stage: Stage) -> bool:
    """d-RLAIF replaces the reward model of the RLAIF arm only; the RLHF arm keeps its human-trained RM."""
    return stage.arm == "rlaif" and cfg.rl.reward_source == "direct"


def _rl_upstream(cfg: PipelineConfig, stage: Stage) -> tuple[str, ...]:
    return ("sft",) if uses_direct_reward(cfg, stage) else ("sft", stage.reward)


def _rl_data(cfg: PipelineConfig, stage: Stage) -> list[DatasetConfig]:
    sources = list(cfg.rl.prompts or cfg.data.prompts)
    return sources + (list(cfg.data.eval) if cfg.rl.heldout_posts else [])


def _evaluate_upstream(cfg: PipelineConfig, stage: Stage) -> tuple[str, ...]:
    return tuple(s.name for s in policies(cfg)) + tuple(s.name for s in reward_models(cfg))


def _report_upstream(cfg: PipelineConfig, stage: Stage) -> tuple[str, ...]:
    """Every stage finished so far: the report reruns when any of them reruns, and one that has not
    run yet is shown as not run rather than blocking the report."""
    from rlaif.artifacts import RunDir

    finished = RunDir(cfg).manifest()["stages"]
    return tuple(s.name for s in STAGES if s.name != stage.name and finished.get(s.name, {}).get("status") == "done")


# ----------------------------------------------------------------------------------------------
# The stages, in the order `rlaif run` walks them

STAGES: list[Stage] = [
    Stage(
        "sft", "rlaif.stages.sft", "sft", "sft",
        "supervised fine-tuning of the policy on posts + reference summaries",
        artifacts=("model",), data=lambda cfg, stage: cfg.data.sft,
        role="policy", label="SFT", report="sft",
    ),
    Stage(
        "pairs", "rlaif.stages.pairs", "pairs", "pairs",
        "two sampled summaries per prompt-pool post from the SFT policy",
        artifacts=("pairs.jsonl",), upstream=("sft",), data=lambda cfg, stage: cfg.data.prompts, single_process=True,
    ),
    Stage(
        "label", "rlaif.stages.label", "label", "labels",
        "AI preference labels for the pairs (LLM judge, both orders, soft labels)",
        artifacts=("labels.jsonl",), upstream=("pairs",), data=lambda cfg, stage: _label_files(cfg),
        report="label", single_process=True,
    ),
    # The labeler's agreement with human choices: the report puts it next to the labels and win rates.
    Stage(
        "label_alignment", "rlaif.stages.label_alignment", "label", "label_alignment",
        "judge the human comparison sets in label.alignment_* and report agreement; labels no pairs",
        data=_alignment_data, settings=_human_settings, command="label", flag="eval-alignment",
        single_process=True, label="labeler alignment with human comparisons", when=_measures_people,
        when_unmet="human.comparisons, label.alignment_summarize and label.alignment_dialogue are all empty; "
        "list human comparison files there to use --eval-alignment",
    ),
    Stage(
        "reward", "rlaif.stages.reward", "reward", "reward",
        "reward model on AI preference labels (RLAIF arm)",
        artifacts=("model", "adapter"), upstream=_reward_upstream, data=_reward_data, settings=_human_settings,
        arm="rlaif",
        role="reward_model", report="reward",
        options=(("eval-only", "score the saved reward model on the section's eval_comparisons; trains nothing"),),
    ),
    Stage(
        "rl", "rlaif.stages.rl", "rl", "rl",
        "PPO of the SFT policy against the RLAIF reward model (or the direct AI reward)",
        artifacts=("model", "heldout.jsonl"), upstream=_rl_upstream, data=_rl_data, arm="rlaif",
        role="policy", label="RL (RLAIF)", reward="reward", report="rl",
    ),
    Stage(
        "reward_rlhf", "rlaif.stages.reward", "reward_rlhf", "reward_rlhf",
        "reward model on human comparisons or reference-preferred pairs (RLHF arm)",
        artifacts=("model", "adapter"), upstream=_reward_upstream, data=_reward_data, settings=_human_settings,
        command="reward", arm="rlhf",
        role="reward_model", report="reward",
        options=(("eval-only", "score the saved reward model on the section's eval_comparisons; trains nothing"),),
    ),
    Stage(
        "rl_rlhf", "rlaif.stages.rl", "rl", "rl_rlhf",
        "PPO of the SFT policy against the RLHF reward model",
        artifacts=("model", "heldout.jsonl"), upstream=_rl_upstream, data=_rl_data, command="rl", arm="rlhf",
        requires=("reward_rlhf",), role="policy", label="RL (RLHF)", reward="reward_rlhf", report="rl",
    ),
    # evaluate and report stay last: they read every stage above.
    Stage(
        "evaluate", "rlaif.stages.evaluate", "evaluate", "eval",
        "win rates (LLM judge, both orders), RM scores, lengths, ROUGE-L on held-out posts",
        artifacts=("metrics.json", "posts.jsonl", "generations"), upstream=_evaluate_upstream,
        data=lambda cfg, stage: cfg.data.eval, report=None,
    ),
    Stage(
        "report", "rlaif.stages.report", "report", "report",
        "report.html and report.md with every stage's metrics and plots",
        upstream=_report_upstream, report=None,
    ),
]  # fmt: skip


def stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage named {name!r} (stages: {', '.join(s.name for s in STAGES)})")


def stage_for_command(command: str, arm: str = "rlaif", flag: str | None = None) -> Stage:
    """The stage `rlaif <command> [--arm ARM] [--<flag>]` runs."""
    matches = [s for s in STAGES if s.cli == command and s.flag == flag]
    if len(matches) > 1:
        matches = [s for s in matches if s.arm == arm]
    if len(matches) != 1:
        raise KeyError(f"`rlaif {command}` has no stage for arm {arm!r}" + (f" and --{flag}" if flag else ""))
    return matches[0]


def commands() -> dict[str, list[Stage]]:
    """CLI command -> the stages it reaches (arm twins, `--flag` stages), in pipeline order."""
    out: dict[str, list[Stage]] = {}
    for s in STAGES:
        out.setdefault(s.cli, []).append(s)
    return out


def enabled(cfg: PipelineConfig) -> list[Stage]:
    return [s for s in STAGES if s.enabled(cfg)]


def policies(cfg: PipelineConfig) -> list[Stage]:
    """The evaluated systems this config trains (SFT included), in pipeline order."""
    return [s for s in STAGES if s.role == "policy" and s.enabled(cfg)]


def reward_models(cfg: PipelineConfig) -> list[Stage]:
    return [s for s in STAGES if s.role == "reward_model" and s.enabled(cfg)]


REFERENCE = "reference"
"""The human reference summary, a system of its own on posts that have one."""


def system_names() -> list[str]:
    """Every system an evaluate comparison may name: each policy stage, and the human reference."""
    return [s.name for s in STAGES if s.role == "policy"] + [REFERENCE]


def system_label(name: str) -> str:
    """A system's name in the report's tables."""
    if name == REFERENCE:
        return "human reference"
    s = next((s for s in STAGES if s.name == name), None)
    return (s.label or s.name) if s is not None else name
