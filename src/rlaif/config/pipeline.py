"""The whole pipeline's config: optional tracking, `PipelineConfig` (one section per stage), and
`load_config`, which reads the YAML, applies overrides, builds and validates it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

# Imported at run time, not under TYPE_CHECKING: typing.get_type_hints (from_dict, describe)
# resolves the field annotations in this module's namespace.
from rlaif.config.base import ConfigError, apply_override, from_dict, to_dict
from rlaif.config.data import DataConfig, HumanComparisonsConfig
from rlaif.config.evaluate import EvaluateConfig, FrontierConfig, ReportConfig
from rlaif.config.label import LabelConfig
from rlaif.config.methods import BestOfNConfig, DPOConfig, OAIFConfig
from rlaif.config.reward import RewardConfig
from rlaif.config.rl import GRPOConfig, RLConfig, RLOOConfig
from rlaif.config.sft import PairsConfig, SFTConfig
from rlaif.config.validate import validate


@dataclass
class LoggingConfig:
    """Optional experiment tracking of stage metrics. Never required; the files in runs/ are the record."""

    backend: Literal["none", "tensorboard", "wandb", "trackio"] = "none"
    """`none`, `tensorboard` (needs `pip install tensorboard`; logs under runs/<name>/tensorboard),
    `wandb` (needs `pip install wandb`; the key comes from WANDB_API_KEY) or `trackio`."""
    project: str = "rlaif"
    """Project name for wandb and trackio; each stage logs as a run named `<run name>-<stage>`."""


@dataclass
class PipelineConfig:
    """One run of the pipeline: shared settings plus one section per stage."""

    name: str = "run"
    """Run name; the default output_dir is runs/<name>."""
    output_dir: str = ""
    """Where every stage writes (default runs/<name>)."""
    seed: int = 0
    """Seed for data splits, sampling and initialisation."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data sources and prompt construction."""
    human: HumanComparisonsConfig = field(default_factory=HumanComparisonsConfig)
    """Human comparisons: the RLHF arm's training data and the held-out rows every judge is measured on."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Stage sft."""
    pairs: PairsConfig = field(default_factory=PairsConfig)
    """Stage pairs."""
    label: LabelConfig = field(default_factory=LabelConfig)
    """Stage label."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Stage reward: the RLAIF arm's reward model (source ai_labels)."""
    reward_rlhf: RewardConfig | None = None
    """Stage reward_rlhf: the RLHF arm's reward model (source human or reference_preferred); None = no RLHF arm."""
    rl: RLConfig | None = field(default_factory=RLConfig)
    """Stages rl and rl_rlhf: PPO against each arm's reward; None = no RL."""
    rloo: RLOOConfig | None = None
    """Stages rloo and rloo_rlhf: RLOO (k samples per prompt, leave-one-out baseline, no critic); None = off."""
    grpo: GRPOConfig | None = None
    """Stages grpo and grpo_rlhf: GRPO or Dr. GRPO (group-normalised advantages, no critic); None = off."""
    dpo: DPOConfig | None = None
    """Stages dpo and dpo_rlhf: offline DPO on the AI soft labels / human comparisons; None = off."""
    oaif: OAIFConfig | None = None
    """Stages oaif and oaif_rlhf: online DPO on pairs from the current policy, judged as they come; None = off."""
    best_of_n: BestOfNConfig | None = None
    """Stages best_of_n and best_of_n_rlhf: n SFT samples per evaluation post, the arm's RM picks; None = off."""
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    """Stage evaluate: judged win rates, reward-model scores, lengths and ROUGE-L on data.eval."""
    frontier: FrontierConfig | None = None
    """Stage frontier: KL to SFT against reward along every method's training; None = off."""
    report: ReportConfig = field(default_factory=ReportConfig)
    """Stage report: report.html and report.md from every stage's outputs."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Optional metric tracking (TensorBoard, Weights & Biases, Trackio); off by default."""

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


def load_config(path: str | Path, overrides: list[str] = ()) -> PipelineConfig:
    """Read a YAML config, apply `key.sub=value` overrides, validate, and return it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    for item in overrides:
        apply_override(raw, item)
    cfg = from_dict(PipelineConfig, raw, where="")
    validate(cfg)
    return cfg


def to_yaml(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
