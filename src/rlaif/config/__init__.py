"""Typed configuration: one dataclass per stage, one YAML file for the whole pipeline.

`load_config(path, overrides)` reads the YAML, applies `--set a.b=c` overrides, and builds the
dataclasses below, checking every key and type. Errors name the field by its dotted path
(`sft.learning_rate: expected float, got 'fast'`). The docstring under each field is what
`rlaif <stage> --help` prints, so it is the single place a setting is documented.

Layout: base.py (ConfigError, YAML -> dataclass building, overrides, hashing, help), data.py
(data sources, LoRA, the `data` and `human` sections), sft.py (sft, pairs), label.py (labeler, label), reward.py,
rl.py (rl + PPO, rloo, grpo), methods.py (dpo, oaif, best_of_n), evaluate.py (evaluate, report), pipeline.py (PipelineConfig, load_config) and
validate.py (cross-field and file checks). Import from `rlaif.config`; the modules are layout.
"""

from rlaif.config.base import (
    EMBEDDED_MODELS,
    ConfigError,
    apply_override,
    describe,
    field_docs,
    from_dict,
    section_hash,
    to_dict,
)
from rlaif.config.data import LOCAL_DATA_SUFFIXES, DataConfig, DatasetConfig, HumanComparisonsConfig, LoraSettings
from rlaif.config.evaluate import EvaluateConfig, FrontierConfig, ReportConfig
from rlaif.config.label import LabelConfig, LabelerSettings, OpenAIApiSettings
from rlaif.config.methods import BestOfNConfig, DPOConfig, OAIFConfig, PreferenceOptimSettings
from rlaif.config.pipeline import LoggingConfig, PipelineConfig, load_config, to_yaml
from rlaif.config.reward import RewardConfig
from rlaif.config.rl import GRPOConfig, PPOSettings, RLConfig, RLOOConfig
from rlaif.config.sft import PairsConfig, SFTConfig
from rlaif.config.validate import validate

__all__ = [
    "BestOfNConfig",
    "DPOConfig",
    "OAIFConfig",
    "PreferenceOptimSettings",
    "EMBEDDED_MODELS",
    "LOCAL_DATA_SUFFIXES",
    "ConfigError",
    "DataConfig",
    "DatasetConfig",
    "EvaluateConfig",
    "FrontierConfig",
    "HumanComparisonsConfig",
    "LabelConfig",
    "LabelerSettings",
    "LoggingConfig",
    "LoraSettings",
    "OpenAIApiSettings",
    "PPOSettings",
    "PairsConfig",
    "PipelineConfig",
    "RLConfig",
    "RLOOConfig",
    "GRPOConfig",
    "ReportConfig",
    "RewardConfig",
    "SFTConfig",
    "apply_override",
    "describe",
    "field_docs",
    "from_dict",
    "load_config",
    "section_hash",
    "to_dict",
    "to_yaml",
    "validate",
]
