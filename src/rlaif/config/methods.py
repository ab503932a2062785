"""Config sections of the methods beside PPO, each an arm-able stage initialised from sft/model:
`dpo` (offline DPO on preference labels), `oaif` (online AI feedback: DPO on pairs sampled from the
current policy and judged as they come) and `best_of_n` (n SFT samples per evaluation post, the
reward model picks one). Each section is None (off) by default; `arms` says which arms run.
Details [P01]-[P12] in docs/implementation_details.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

# Imported at run time, not under TYPE_CHECKING: typing.get_type_hints (from_dict, describe)
# resolves the field annotations in this module's namespace.
from rlaif.config.data import DatasetConfig, LoraSettings
from rlaif.config.label import LabelerSettings

Arm = Literal["rlaif", "rlhf"]


@dataclass
class PreferenceOptimSettings:
    """Model, DPO loss, optimiser and checkpoints shared by `dpo` and `oaif` (rlaif.dpo)."""

    arms: list[Arm] = field(default_factory=lambda: ["rlaif", "rlhf"])
    """Which arms run: `rlaif` (AI feedback) and/or `rlhf` (human comparisons, or the RLHF reward
    model where the method needs a judge in the loop). An arm whose inputs this config lacks (no
    reward_rlhf section) does not exist, as for rl_rlhf."""

    # --- model ---
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of the policy (and the reference). float32 on CPU. Log-probs are float32 whatever it is."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """`enabled`: train a LoRA adapter on the frozen SFT model; the reference is the same model with the
    adapter switched off (peft disable_adapter) [P04]. Off: full fine-tuning. model/ is merged either way."""

    # --- loss ---
    beta: float = 0.5
    """DPO's beta: the strength of the implicit KL constraint to the SFT policy; the loss is
    -[p log sigmoid(beta D) + (1-p) log sigmoid(-beta D)] [P01]. 0.5 is Rafailov et al. 2023's TL;DR
    setting (arXiv 2305.18290, App. B; 0.1 elsewhere)."""
    max_response_tokens: int = 53
    """Responses are cut to this many tokens before EOS is appended (53: Huang et al. 2024's
    TL;DR response length); prompts are already cut to data.max_prompt_tokens."""

    # --- optimiser ---
    learning_rate: float = 1e-6
    """Peak learning rate. 1e-6 is Rafailov et al. 2023 (App. B) for full fine-tuning; LoRA wants
    ~100x more."""
    warmup_ratio: float = 0.1
    """Share of the optimizer steps over which the learning rate rises linearly from 0; it stays
    constant afterwards (Rafailov et al. 2023: 150 warmup steps, about 10% of an epoch of TL;DR's
    92k pairs at batch 64). [P06]"""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_eps: float = 1e-8
    """AdamW epsilon (PyTorch's default)."""
    max_grad_norm: float | None = 10.0
    """Clip the gradient norm to this (the DPO reference code's max_grad_norm: 10); None = no clipping."""
    batch_size: int = 64
    """Pairs per optimizer step, over all processes (Rafailov et al. 2023: 64). Must be a multiple
    of micro_batch_size x processes."""
    micro_batch_size: int = 8
    """Pairs per forward/backward on one process (both summaries of each in one forward). A memory
    knob: results change only by float rounding [P05]."""

    # --- checkpoints ---
    snapshots: int = 0
    """Save the policy at this many evenly spaced points of training (trajectory/step-K/; a LoRA
    policy as its adapter), the last at the end: the points of the frontier stage. 0 = none. [F01]"""
    save_steps: int = 20
    """Checkpoint (trainable weights, optimizer, scheduler, RNG streams) every N optimizer steps; a
    rerun of a killed run resumes from the last one to the result an uninterrupted run gives. [P07]"""
    save_total_limit: int = 2
    """Keep at most this many checkpoints on disk."""


@dataclass
class DPOConfig(PreferenceOptimSettings):
    """Stages `dpo` (RLAIF arm: the AI soft labels of labels/labels.jsonl) and `dpo_rlhf` (RLHF arm:
    human comparisons): offline DPO of the SFT policy (Rafailov et al. 2023, arXiv 2305.18290) with
    the soft-label target P(a > b). Reference log-probs are computed once and cached. [P01]-[P07]"""

    RENAMED: ClassVar[dict[str, str]] = {"min_confidence": "min_strength"}
    """Old keys and their replacements; an old key is an error that says what changed ([H01])."""

    # --- data ---
    comparisons: list[DatasetConfig] = field(default_factory=list)
    """Human comparisons of the RLHF arm; empty = the ones the RLHF reward model trains on
    (reward_rlhf with source `human`: its comparisons, or the training part of human.comparisons).
    With neither, the RLHF arm of dpo does not exist. Posts of human's held-out part are always
    left out [H02]."""
    min_strength: int | None = None
    """RLHF arm, with `comparisons` set: keep comparisons whose strength |confidence - 5| is at
    least this (1-4, symmetric in the two summaries; None = all) [H01]. With `comparisons` empty,
    reward_rlhf.min_strength applies, so both arms train on the same pairs."""
    max_pairs: int | None = None
    """Train on at most the first N pairs (in id order; None = all)."""

    # --- schedule ---
    num_epochs: float = 1.0
    """Passes over the pairs; optimizer steps = floor(num_epochs x pairs / batch_size) unless max_steps is set."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (None: num_epochs decides)."""
    reference_batch_size: int = 16
    """Pairs per no-grad forward while computing the reference log-probs (once, before training)."""


@dataclass
class OAIFConfig(PreferenceOptimSettings):
    """Stages `oaif` (RLAIF arm: the LLM labeler judges, both orders, soft label) and `oaif_rlhf`
    (RLHF arm: reward_rlhf/model picks): online AI feedback (Guo et al. 2024, arXiv 2402.04792).
    Each step samples two summaries per prompt from the current policy, gets a preference for each
    pair, and takes one DPO step with the SFT policy as reference. [P08]-[P10]"""

    beta: float = 0.1
    """DPO's beta (see dpo.beta); 0.1 is DPO's general default (Rafailov et al. 2023, App. B) and
    what TRL's online DPO uses."""

    # --- prompts and sampling ---
    prompts: list[DatasetConfig] = field(default_factory=list)
    """Posts to optimise on; empty = the prompt pool's posts the reward model never saw, as for PPO
    (rlaif.data.splits.policy_posts)."""
    total_prompts: int = 256
    """Prompts used over the run (two samples each); steps = total_prompts // batch_size."""
    response_length: int = 53
    """Tokens sampled per summary, cut after the first EOS (Huang et al. 2024: 53)."""
    temperature: float = 0.7
    """Sampling temperature of the two summaries (Huang et al. 2024: 0.7). The DPO loss scores them
    at temperature 1, as DPO defines the policy."""

    # --- the judge in the loop ---
    labeler: LabelerSettings | None = None
    """RLAIF arm's judge; None = label.labeler, with label.prompt_style and label.fewshot_file (the
    judge that labels the offline pairs, so DPO and OAIF differ only in being online). Any backend."""
    undecided: Literal["drop", "half"] = "drop"
    """A pair the labeler leaves undecided in either order: `drop` leaves it out of the step's loss,
    `half` trains it towards P(a > b) = 0.5. The RLHF arm's reward-model tie is 0.5."""

    # --- logging ---
    sample_steps: int = 10
    """Append a few pairs with their labels to samples.jsonl every N steps."""


@dataclass
class BestOfNConfig:
    """Stages `best_of_n` (RLAIF arm: reward/model picks) and `best_of_n_rlhf` (RLHF arm:
    reward_rlhf/model picks): n SFT samples per evaluation post, the arm's reward model picks the
    best; evaluate scores the pick as a system. The baseline every RL result should beat. [P11][P12]"""

    arms: list[Arm] = field(default_factory=lambda: ["rlaif", "rlhf"])
    """Which arms run (see dpo.arms); the RLHF arm needs reward_rlhf."""
    n: int = 16
    """Samples per post; picks at n = 1, 2, 4, ... up to this are recomputable from candidates.jsonl,
    and the pick at n is the system's summary. KL(best-of-n || SFT) <= log n - (n-1)/n (Beirami et
    al. 2024, arXiv 2401.01879): 1.83 nats at 16."""
    temperature: float = 1.0
    """Sampling temperature; 1.0 samples the SFT policy itself, which the KL bound is relative to
    (at another temperature it bounds the KL to the tempered policy)."""
    max_new_tokens: int = 53
    """Token cap of each sample; evaluate.max_new_tokens is the other systems' cap, keep them equal."""
    sample_batch_size: int = 16
    """Rows per sampling call: sample_batch_size // n posts are sampled together (n rows each, the
    prompt read once for its n); when n is larger, one post's n are cut into calls of this. The posts
    of a call share one seeded generator, so changing this changes the samples. [P14]"""
    score_batch_size: int = 16
    """Summaries per reward-model forward."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of the SFT policy while sampling."""
    score_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of the reward model while scoring (float32: the scores evaluate and frontier compute)."""
