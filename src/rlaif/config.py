"""Typed configuration: one dataclass per stage, one YAML file for the whole pipeline.

`load_config(path, overrides)` reads the YAML, applies `--set a.b=c` overrides, and builds the
dataclasses below, checking every key and type. Errors name the field by its dotted path
(`sft.learning_rate: expected float, got 'fast'`). The docstring under each field is what
`rlaif <stage> --help` prints, so it is the single place a setting is documented.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import textwrap
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the field."""


# Model names that `rlaif.models` resolves without the Hub.
EMBEDDED_MODELS = ("smollm2-135m", "tiny-random")
LOCAL_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".gz")


# ----------------------------------------------------------------------------------------------
# Shared pieces


@dataclass
class DatasetConfig:
    """One data source: a Hub dataset id or a local file."""

    path: str = ""
    """Hub dataset id (`trl-lib/tldr`, `CarperAI/openai_summarize_tldr`,
    `openai/summarize_from_feedback`) or a local .jsonl/.json/.parquet/.csv file (relative paths
    are relative to the directory you run `rlaif` from)."""
    hub_config: str | None = None
    """Hub dataset config name, e.g. `comparisons` or `axis` for openai/summarize_from_feedback."""
    split: str | None = None
    """Hub split to load (default `train`). For a local file with a `split` column, keep only rows
    with this value; None keeps every row."""
    fields: dict[str, str] = field(default_factory=dict)
    """Our field name -> the source's column name, for sources that name columns differently.
    Our fields: id, subreddit, title, post, summary (posts) or chosen, rejected (pairs)."""
    limit: int | None = None
    """Keep only the first N rows after filtering (None = all)."""
    skip: int = 0
    """Drop the first N rows after filtering, before `limit` (carves disjoint slices of one file)."""
    on_bad_row: Literal["error", "skip"] = "error"
    """`error`: a malformed row stops the run with file, line and field named. `skip`: such rows
    are dropped and counted in the stage metrics."""

    @property
    def is_local(self) -> bool:
        p = self.path
        return p.startswith((".", "/", "~")) or p.lower().endswith(LOCAL_DATA_SUFFIXES)


@dataclass
class LoraSettings:
    """LoRA through peft. Off means full fine-tuning."""

    enabled: bool = False
    """Train LoRA adapters instead of all weights."""
    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Scaling numerator (effective scale alpha / r)."""
    dropout: float = 0.0
    """Adapter dropout; 0 keeps training deterministic, as RLHF implementations prefer."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Modules that get adapters; `all-linear` is peft's shorthand for every linear layer but the head."""


@dataclass
class DataConfig:
    """Where the posts come from and how prompts are built. Shared by every stage."""

    sft: list[DatasetConfig] = field(default_factory=list)
    """Posts with human reference summaries, for supervised fine-tuning."""
    prompts: list[DatasetConfig] = field(default_factory=list)
    """Posts (summaries not needed) for the pairs, labels, reward and RL stages. A comparisons set
    in the summarize_from_feedback schema is de-duplicated into unique posts."""
    eval: list[DatasetConfig] = field(default_factory=list)
    """Held-out posts, with reference summaries where available, for evaluation."""
    max_prompt_tokens: int = 512
    """Token budget of a formatted prompt. Longer posts are cut at the last newline (else sentence
    end, else word boundary) that fits, as OpenAI's TL;DR preprocessing does (Stiennon et al. 2020)."""
    max_summary_tokens: int = 53
    """Token budget of a reference summary, EOS excluded; 53 matches the RL response cap of
    Huang et al. 2024 so SFT targets and sampled responses have the same horizon."""


# ----------------------------------------------------------------------------------------------
# Stages


@dataclass
class SFTConfig:
    """Stage `sft`: supervised fine-tuning of the policy on posts and reference summaries."""

    # --- model ---
    model: str = "smollm2-135m"
    """Model to fine-tune: `smollm2-135m` (embedded), `tiny-random` (tests), a Hub id or a folder."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype. float32 on CPU; bfloat16 on recent GPUs."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """LoRA settings; the saved sft/model/ is always the merged full model."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (slower)."""

    # --- optimisation (paper.yaml follows Huang et al. 2024: lr 5e-5, 1 epoch, batch 64) ---
    learning_rate: float = 5e-5
    """Peak learning rate (AdamW)."""
    lr_scheduler_type: str = "cosine"
    """Any transformers scheduler name (cosine, linear, constant, ...)."""
    warmup_ratio: float = 0.0
    """Fraction of steps spent warming up the learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    num_train_epochs: float = 1.0
    """Passes over the training split."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = use num_train_epochs)."""
    per_device_batch_size: int = 8
    """Sequences per device per micro-step."""
    gradient_accumulation_steps: int = 1
    """Micro-steps per optimizer step; global batch = per_device_batch_size * this * processes."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""

    # --- data ---
    validation_fraction: float = 0.1
    """Share of the SFT rows held out for validation loss (at least 1 row)."""
    max_examples: int | None = None
    """Use at most this many training rows (None = all)."""

    # --- logging, checkpoints, samples ---
    logging_steps: int = 5
    """Log the training loss every N optimizer steps."""
    eval_steps: int = 20
    """Compute the validation loss every N optimizer steps."""
    save_steps: int = 20
    """Checkpoint (model, optimizer, scheduler, RNG) every N steps; a rerun resumes from the last."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints on disk."""
    num_samples: int = 4
    """Validation posts to summarise greedily into sft/samples.jsonl after training."""
    sample_max_new_tokens: int = 53
    """Token cap for those sample summaries."""


# ----------------------------------------------------------------------------------------------
# The whole pipeline


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
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Stage sft."""

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


# ----------------------------------------------------------------------------------------------
# Loading, validation, overrides


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


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the value is parsed as YAML (`1e-4`, `true`, `[a, b]`)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    node: Any = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(node, part, key)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
    parsed = yaml.safe_load(value) if value != "" else ""
    if isinstance(node, list):
        node[_list_index(node, parts[-1], key)] = parsed
    else:
        node[parts[-1]] = parsed


def _list_index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def from_dict(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from plain YAML data, checking keys and types recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known keys here: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in raw.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {_show(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        return [_coerce(args[0], v, f"{where}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        return {_coerce(args[0], k, where): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        # YAML 1.1 reads `5e-5` (no dot) as a string; accept any numeric spelling.
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")  # a bug in this file, not in the YAML


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def validate(cfg: PipelineConfig) -> None:
    """Checks that need more than one field or the file system."""
    for section in ("sft", "prompts", "eval"):
        for i, ds in enumerate(getattr(cfg.data, section)):
            where = f"data.{section}.{i}.path"
            if not ds.path:
                raise ConfigError(f"{where}: empty; give a Hub dataset id or a local file")
            if ds.is_local and not Path(ds.path).expanduser().exists():
                raise ConfigError(f"{where}: file not found: {ds.path}")
            if ds.limit is not None and ds.limit <= 0:
                raise ConfigError(f"data.{section}.{i}.limit: must be positive, got {ds.limit}")
    _check_model_name(cfg.sft.model, "sft.model")
    if not 0.0 < cfg.sft.validation_fraction < 1.0:
        raise ConfigError(f"sft.validation_fraction: must be in (0, 1), got {cfg.sft.validation_fraction}")
    if cfg.data.max_prompt_tokens < 32:
        raise ConfigError(f"data.max_prompt_tokens: {cfg.data.max_prompt_tokens} leaves no room for a post")


def _check_model_name(name: str, where: str) -> None:
    if not name:
        raise ConfigError(f"{where}: empty; give smollm2-135m, tiny-random, a Hub id or a folder")
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if name not in EMBEDDED_MODELS and looks_local and not Path(name).expanduser().is_dir():
        raise ConfigError(f"{where}: model folder not found: {name}")


# ----------------------------------------------------------------------------------------------
# Serialisation, hashing and help


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def to_yaml(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def section_hash(section: Any) -> str:
    """Stable hash of one config section, for the manifest's freshness checks."""
    blob = json.dumps(to_dict(section), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (the convention tyro and TRL use), parsed with ast."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def describe(cls: type, prefix: str = "", instance: Any = None) -> list[str]:
    """Help lines `key (type, default): doc` for every field of a section, nested sections flattened."""
    instance = instance if instance is not None else cls()
    hints, docs, lines = typing.get_type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        key, value = f"{prefix}{f.name}", getattr(instance, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            lines.append(f"  {key}: {docs.get(f.name, '')}")
            lines += describe(hints[f.name], f"{key}.", value)
        else:
            type_name = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            lines.append(f"  {key} ({type_name} = {value!r}): {docs.get(f.name, '')}")
    return lines
