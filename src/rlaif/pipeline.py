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
    reads: Callable[[PipelineConfig, Stage], dict] | None = None
    """Settings of other config sections the stage reads ({dotted name: value}), hashed into its
    fingerprint with its own section, so changing one makes the stage stale (best_of_n samples the
    first evaluate.max_posts posts; the reward stages train on the `human` split's training part)."""
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
    """Report section that draws this stage's outputs: sft, label, reward, rl, dpo, best_of_n or generic; None: none
    (evaluate is the report's headline, rlaif.report.results)."""
    keeps: tuple[str, ...] = ()
    """Outputs kept when a stale stage reruns (the rest of its folder is wiped): caches whose every row
    records what it was computed from, so the stage drops the rows that no longer match (evaluate's
    summaries, reward-model scores and judgements: adding a method to a finished run decodes and
    judges only what is new; `--force` wipes them too) [E11]."""
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

    def hashed_settings(self, cfg: PipelineConfig):
        """What the fingerprint hashes of the config: the stage's section, with `reads` beside it (a
        stage whose `reads` are empty in this config hashes its section alone)."""
        section = getattr(cfg, self.section) if self.section else None
        reads = self.reads(cfg, self) if self.reads is not None else {}
        if not reads:
            return section
        from rlaif.config import to_dict

        return {"section": to_dict(section) if section is not None else None, "reads": reads}

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

    # The exemplars and prompt template files are inputs: editing one must make the labels stale [L09].
    return [DatasetConfig(path=f) for f in (cfg.label.fewshot_file, cfg.label.prompt_file) if f]


def _alignment_data(cfg: PipelineConfig, stage: Stage) -> list[DatasetConfig]:
    sets = list(cfg.label.alignment_summarize) + list(cfg.label.alignment_dialogue) + list(cfg.human.comparisons)
    return sets + _label_files(cfg)


def _human_settings(cfg: PipelineConfig, stage: Stage) -> dict[str, Any]:
    """The human split and how its prompts are cut: every stage measured on the held-out part reads
    them, and the reward stages train on the rest [H02]."""
    if not cfg.human.comparisons:
        return {}
    from rlaif.config import to_dict

    return {
        "human": to_dict(cfg.human),
        "data.max_prompt_tokens": cfg.data.max_prompt_tokens,
        "sft.model": cfg.sft.model,
    }


def reads_human_split(stage: Stage) -> bool:
    """Whether the stage reads the `human` section (its split trains or measures it) [H02]."""
    return stage.reads in (_human_settings, _dpo_reads)


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
    """d-RLAIF replaces the reward model of the RLAIF arm only; the RLHF arm keeps its human-trained RM.
    The RL stage's own section (rl, rloo or grpo) says which reward its RLAIF arm uses."""
    return stage.arm == "rlaif" and _section(cfg, stage).reward_source == "direct"


def _rl_upstream(cfg: PipelineConfig, stage: Stage) -> tuple[str, ...]:
    return ("sft",) if uses_direct_reward(cfg, stage) else ("sft", stage.reward)


def _rl_data(cfg: PipelineConfig, stage: Stage) -> list[DatasetConfig]:
    from rlaif.config import DatasetConfig

    settings = _section(cfg, stage)
    sources = list(settings.prompts or cfg.data.prompts)
    # d-RLAIF's prompt template file is an input: editing it must make the policy stale [L09]
    if uses_direct_reward(cfg, stage) and settings.direct_prompt_file:
        sources.append(DatasetConfig(path=settings.direct_prompt_file))
    return sources + (list(cfg.data.eval) if settings.heldout_posts else [])


def _arm_listed(section: str, arm: str) -> Callable[[PipelineConfig], bool]:
    """`when` of a method's arm stage: the method's section lists the arm in `arms` (dpo, oaif, best_of_n)."""
    return lambda cfg: arm in getattr(cfg, section).arms


def has_human_comparisons(cfg: PipelineConfig) -> bool:
    """dpo_rlhf's data: dpo.comparisons, or the human comparisons reward_rlhf trains on."""
    rm = cfg.reward_rlhf
    trains_on_people = rm is not None and rm.source == "human" and bool(rm.comparisons or cfg.human.comparisons)
    return bool(cfg.dpo.comparisons) or trains_on_people


def _dpo_upstream(cfg: PipelineConfig, stage: Stage) -> tuple[str, ...]:
    return ("sft", "label") if stage.arm == "rlaif" else ("sft",)


def _dpo_data(cfg: PipelineConfig, stage: Stage) -> list[DatasetConfig]:
    if stage.arm == "rlaif":
        return []
    # human.comparisons: its held-out posts are left out of any source, and its training part is
    # the RLHF reward model's data when reward_rlhf.comparisons is empty [H02]
    return list(cfg.dpo.comparisons or cfg.reward_rlhf.comparisons) + list(cfg.human.comparisons)


def _dpo_reads(cfg: PipelineConfig, stage: Stage) -> dict:
    reads: dict = {"data.max_prompt_tokens": cfg.data.max_prompt_tokens}
    if stage.arm == "rlhf":
        if not cfg.dpo.comparisons:  # the RLHF reward model's comparisons and filter
            reads["reward_rlhf.min_strength"] = cfg.reward_rlhf.min_strength
        reads.update(_human_settings(cfg, stage))
    return reads


def _oaif_upstream(cfg: PipelineConfig, stage: Stage) -> tuple[str, ...]:
    return ("sft",) if stage.arm == "rlaif" else ("sft", stage.reward)


def _oaif_data(cfg: PipelineConfig, stage: Stage) -> list[DatasetConfig]:
    sources = list(cfg.oaif.prompts or cfg.data.prompts)
    return sources + (_label_files(cfg) if stage.arm == "rlaif" else [])


def _oaif_reads(cfg: PipelineConfig, stage: Stage) -> dict:
    from rlaif.config import to_dict

    reads: dict = {"data.max_prompt_tokens": cfg.data.max_prompt_tokens}
    if not cfg.oaif.prompts:
        reads["pairs.num_posts"] = cfg.pairs.num_posts  # the prompt pool's split (rlaif.data.splits)
    if stage.arm == "rlaif" and cfg.oaif.labeler is None:  # the judge in the loop is the label stage's
        reads["label.labeler"] = to_dict(cfg.label.labeler)
    if stage.arm == "rlaif":  # the label stage's prompt (its files are in `data`)
        reads["label.prompt_style"] = cfg.label.prompt_style
        reads["label.discourage_length"] = cfg.label.discourage_length
    return reads


def _best_of_n_reads(cfg: PipelineConfig, stage: Stage) -> dict:
    return {"evaluate.max_posts": cfg.evaluate.max_posts, "data.max_prompt_tokens": cfg.data.max_prompt_tokens}


def _evaluate_upstream(cfg: PipelineConfig, stage: Stage) -> tuple[str, ...]:
    return tuple(s.name for s in policies(cfg)) + tuple(s.name for s in reward_models(cfg))


def _evaluate_data(cfg: PipelineConfig, stage: Stage) -> list[DatasetConfig]:
    from rlaif.config import DatasetConfig

    # the judge's prompt template file is an input: editing it must make the judgements stale [L09]
    prompt_file = cfg.evaluate.judge_prompt_file
    return list(cfg.data.eval) + ([DatasetConfig(path=prompt_file)] if prompt_file else [])


def _frontier_upstream(cfg: PipelineConfig, stage: Stage) -> tuple[str, ...]:
    methods = [s.name for s in policies(cfg) if "trajectory" in s.artifacts or "candidates.jsonl" in s.artifacts]
    return ("sft", *methods, *(s.name for s in reward_models(cfg)))


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
        data=_alignment_data, reads=_human_settings, command="label", flag="eval-alignment",
        single_process=True, label="labeler alignment with human comparisons", when=_measures_people,
        when_unmet="human.comparisons, label.alignment_summarize and label.alignment_dialogue are all empty; "
        "list human comparison files there to use --eval-alignment",
    ),
    Stage(
        "reward", "rlaif.stages.reward", "reward", "reward",
        "reward model on AI preference labels (RLAIF arm)",
        artifacts=("model", "adapter"), upstream=_reward_upstream, data=_reward_data, reads=_human_settings,
        arm="rlaif",
        role="reward_model", report="reward",
        options=(("eval-only", "score the saved reward model on the section's eval_comparisons; trains nothing"),),
    ),
    Stage(
        "rl", "rlaif.stages.rl", "rl", "rl",
        "PPO of the SFT policy against the RLAIF reward model (or the direct AI reward)",
        artifacts=("model", "heldout.jsonl", "trajectory"), upstream=_rl_upstream, data=_rl_data, arm="rlaif",
        role="policy", label="RL (RLAIF)", reward="reward", report="rl",
    ),
    Stage(
        "reward_rlhf", "rlaif.stages.reward", "reward_rlhf", "reward_rlhf",
        "reward model on human comparisons or reference-preferred pairs (RLHF arm)",
        artifacts=("model", "adapter"), upstream=_reward_upstream, data=_reward_data, reads=_human_settings,
        command="reward", arm="rlhf",
        role="reward_model", report="reward",
        options=(("eval-only", "score the saved reward model on the section's eval_comparisons; trains nothing"),),
    ),
    Stage(
        "rl_rlhf", "rlaif.stages.rl", "rl", "rl_rlhf",
        "PPO of the SFT policy against the RLHF reward model",
        artifacts=("model", "heldout.jsonl", "trajectory"), upstream=_rl_upstream, data=_rl_data, command="rl", arm="rlhf",
        requires=("reward_rlhf",), role="policy", label="RL (RLHF)", reward="reward_rlhf", report="rl",
    ),
    # RLOO and GRPO: the rl stage's code with the algorithm their section fixes [D51]-[D55].
    Stage(
        "rloo", "rlaif.stages.rl", "rloo", "rloo",
        "RLOO of the SFT policy (k samples per prompt, leave-one-out baseline) against the RLAIF reward",
        artifacts=("model", "heldout.jsonl", "trajectory"), upstream=_rl_upstream, data=_rl_data, arm="rlaif",
        role="policy", label="RLOO (RLAIF)", reward="reward", report="rl",
    ),
    Stage(
        "rloo_rlhf", "rlaif.stages.rl", "rloo", "rloo_rlhf",
        "RLOO of the SFT policy against the RLHF reward model",
        artifacts=("model", "heldout.jsonl", "trajectory"), upstream=_rl_upstream, data=_rl_data, command="rloo",
        arm="rlhf", requires=("reward_rlhf",), role="policy", label="RLOO (RLHF)", reward="reward_rlhf", report="rl",
    ),
    Stage(
        "grpo", "rlaif.stages.rl", "grpo", "grpo",
        "GRPO (or Dr. GRPO) of the SFT policy (group-normalised advantages, k3 KL in the loss) against the RLAIF reward",
        artifacts=("model", "heldout.jsonl", "trajectory"), upstream=_rl_upstream, data=_rl_data, arm="rlaif",
        role="policy", label="GRPO (RLAIF)", reward="reward", report="rl",
    ),
    Stage(
        "grpo_rlhf", "rlaif.stages.rl", "grpo", "grpo_rlhf",
        "GRPO (or Dr. GRPO) of the SFT policy against the RLHF reward model",
        artifacts=("model", "heldout.jsonl", "trajectory"), upstream=_rl_upstream, data=_rl_data, command="grpo",
        arm="rlhf", requires=("reward_rlhf",), role="policy", label="GRPO (RLHF)", reward="reward_rlhf", report="rl",
    ),
    # The methods beside PPO, each from sft/model, each arm-able by its section's `arms` [P01]-[P12].
    Stage(
        "dpo", "rlaif.stages.dpo", "dpo", "dpo",
        "offline DPO of the SFT policy on the AI soft labels (RLAIF arm) or human comparisons (--arm rlhf)",
        artifacts=("model", "trajectory"), upstream=_dpo_upstream, data=_dpo_data, reads=_dpo_reads, arm="rlaif",
        when=_arm_listed("dpo", "rlaif"), when_unmet="dpo.arms does not list rlaif",
        role="policy", label="DPO (RLAIF)", reward="reward", report="dpo",
    ),
    Stage(
        "dpo_rlhf", "rlaif.stages.dpo", "dpo", "dpo_rlhf",
        "offline DPO of the SFT policy on human comparisons (RLHF arm)",
        artifacts=("model", "trajectory"), upstream=_dpo_upstream, data=_dpo_data, reads=_dpo_reads, command="dpo", arm="rlhf",
        when=lambda cfg: _arm_listed("dpo", "rlhf")(cfg) and has_human_comparisons(cfg),
        when_unmet="dpo_rlhf needs dpo.arms to list rlhf and human comparisons: dpo.comparisons, or reward_rlhf "
        "with source `human`",
        role="policy", label="DPO (RLHF)", reward="reward_rlhf", report="dpo",
    ),
    Stage(
        "oaif", "rlaif.stages.oaif", "oaif", "oaif",
        "online AI feedback: DPO on pairs sampled from the current policy, judged by the labeler as they come",
        artifacts=("model", "trajectory"), upstream=_oaif_upstream, data=_oaif_data, reads=_oaif_reads, arm="rlaif",
        when=_arm_listed("oaif", "rlaif"), when_unmet="oaif.arms does not list rlaif",
        role="policy", label="OAIF (RLAIF)", reward="reward", report="dpo",
    ),
    Stage(
        "oaif_rlhf", "rlaif.stages.oaif", "oaif", "oaif_rlhf",
        "online DPO on pairs sampled from the current policy, picked by the RLHF reward model",
        artifacts=("model", "trajectory"), upstream=_oaif_upstream, data=_oaif_data, reads=_oaif_reads, command="oaif",
        arm="rlhf", requires=("reward_rlhf",), when=_arm_listed("oaif", "rlhf"),
        when_unmet="oaif.arms does not list rlhf", role="policy", label="OAIF (RLHF)", reward="reward_rlhf",
        report="dpo",
    ),
    Stage(
        "best_of_n", "rlaif.stages.best_of_n", "best_of_n", "best_of_n",
        "n SFT samples per evaluation post, the RLAIF reward model picks one",
        artifacts=("summaries.jsonl", "candidates.jsonl"), upstream=("sft", "reward"),
        data=lambda cfg, stage: cfg.data.eval, reads=_best_of_n_reads, arm="rlaif",
        when=_arm_listed("best_of_n", "rlaif"), when_unmet="best_of_n.arms does not list rlaif",
        role="policy", label="best-of-n (RLAIF RM)", reward="reward", report="best_of_n",
    ),
    Stage(
        "best_of_n_rlhf", "rlaif.stages.best_of_n", "best_of_n", "best_of_n_rlhf",
        "n SFT samples per evaluation post, the RLHF reward model picks one",
        artifacts=("summaries.jsonl", "candidates.jsonl"), upstream=("sft", "reward_rlhf"),
        data=lambda cfg, stage: cfg.data.eval, reads=_best_of_n_reads, command="best_of_n", arm="rlhf",
        requires=("reward_rlhf",), when=_arm_listed("best_of_n", "rlhf"),
        when_unmet="best_of_n.arms does not list rlhf", role="policy", label="best-of-n (RLHF RM)",
        reward="reward_rlhf", report="best_of_n",
    ),
    # evaluate, frontier and report stay last: they read every stage above.
    Stage(
        "evaluate", "rlaif.stages.evaluate", "evaluate", "eval",
        "win rates (LLM judge, both orders), RM scores, lengths, ROUGE-L on held-out posts",
        artifacts=("metrics.json", "posts.jsonl", "generations"), upstream=_evaluate_upstream,
        data=_evaluate_data, report=None, keeps=("generations", "rm_scores.jsonl", "judgements.jsonl"),
    ),
    Stage(
        "frontier", "rlaif.stages.frontier", "frontier", "frontier",
        "KL to SFT against reward (both arms' reward models) along every method's training, on held-out posts",
        artifacts=("points.jsonl",), upstream=_frontier_upstream, data=lambda cfg, stage: cfg.data.eval,
        report="frontier",
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


def best_of_n_stages(cfg: PipelineConfig) -> list[Stage]:
    """The policies that write best-of-n candidates (candidates.jsonl): best_of_n and its RLHF twin."""
    return [s for s in policies(cfg) if "candidates.jsonl" in s.artifacts]


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
