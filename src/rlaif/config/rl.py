"""Config sections of the RL stages: `rl` (stages `rl`, `rl_rlhf`: PPO by default), `rloo` (stages
`rloo`, `rloo_rlhf`) and `grpo` (stages `grpo`, `grpo_rlhf`). All three are an `RLConfig`; the
`rloo` and `grpo` sections fix its `algorithm` and start from their papers' settings [D51]-[D55]."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Imported at run time, not under TYPE_CHECKING: typing.get_type_hints (from_dict, describe)
# resolves the field annotations in this module's namespace.
from rlaif.config.data import DatasetConfig, LoraSettings
from rlaif.config.label import LabelerSettings


@dataclass
class PPOSettings:
    """PPO optimisation (Huang et al. 2024, arXiv 2403.17031, §7; reference ppo.py `PpoHParams`).
    RLOO and GRPO read the schedule, `cliprange` and the optimiser; the value and GAE settings
    (cliprange_value, vf_coef, gamma, lam, whiten_advantages) are PPO's alone."""

    # --- schedule ---
    ppo_epochs: int = 4
    """Passes over each rollout batch (reference `noptepochs`). [D10]"""
    num_minibatches: int = 1
    """Optimizer steps per PPO epoch: the rollout batch is shuffled and cut into this many. [D10]"""
    micro_batch_size: int = 8
    """Sequences per forward/backward inside a minibatch (gradient accumulation). A memory knob:
    results change only by float rounding."""

    # --- losses ---
    cliprange: float = 0.2
    """Policy ratio clip epsilon. [D10]"""
    cliprange_value: float = 0.2
    """Value clip around the rollout-time value. [D11]"""
    vf_coef: float = 0.1
    """Weight of the value loss in the total loss (reference `vf_coef`). [D11]"""
    gamma: float = 1.0
    """GAE discount; 1 because the only real reward is terminal and episodes are short. [D07]"""
    lam: float = 0.95
    """GAE lambda. [D07]"""
    whiten_advantages: bool = True
    """Normalise advantages over the rollout batch's real tokens. [D08]"""

    # --- optimiser ---
    learning_rate: float = 3e-6
    """AdamW learning rate; 3e-6 is Huang et al.'s for full fine-tuning; LoRA (lean) wants ~100x more. [D13]"""
    lr_scheduler_type: str = "cosine"
    """Any transformers scheduler name, stepped once per optimizer step (cosine decays to 0). [D13]"""
    adam_eps: float = 1e-5
    """AdamW epsilon (reference 1e-5; PyTorch default 1e-8). [D13]"""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float | None = None
    """Clip the gradient norm to this; None = no clipping (as the reference and TRL 0.13's PPO)."""


@dataclass
class RLConfig:
    """Stages `rl` (RLAIF arm) and `rl_rlhf` (RLHF arm): PPO of the SFT policy against a reward
    source. Details [D01]-[D14], [D40]-[D55] in docs/implementation_details.md."""

    # --- algorithm ---
    algorithm: Literal["ppo", "rloo", "grpo"] = "ppo"
    """`ppo`: a critic and GAE [D01]-[D14]. `rloo`: REINFORCE leave-one-out (Ahmadian et al. 2024,
    arXiv 2402.14740): k samples per prompt, sequence reward score - kl_coef x KL, baseline the mean
    of the other k-1 rewards [D52]. `grpo` (Shao et al. 2024, arXiv 2402.03300): k samples per prompt,
    advantage (score - group mean) / group std, kl_coef x k3 KL in the loss [D53]. RLOO and GRPO
    build no critic (no value model or head). The `rloo` and `grpo` sections fix this field."""
    group_size: int = 1
    """k, samples per prompt: each of the rollout_batch_size prompts is sampled k times and its k
    samples form a group [D51]. PPO: 1 (each sample stands alone); RLOO and GRPO need >= 2."""
    dr_grpo: bool = False
    """GRPO only: Dr. GRPO (Liu et al. 2025, arXiv 2503.20783): the advantage is not divided by the
    group std, and each sequence's token sum is divided by the constant response_length instead of
    its own length [D54]."""

    # --- models ---
    mode: Literal["standard", "lean"] = "standard"
    """`standard`: separate policy, value, reference and reward models, full fine-tuning (what
    TRL 0.13's PPOTrainer does). `lean`: one frozen base (sft/model) with a LoRA policy adapter and
    a value head on its hidden states (PPO's critic; RLOO and GRPO have none); the reference is the base with the adapter off; the reward
    model stays separate and frozen (or, LoRA-trained on the same base, runs as a second adapter).
    Far less memory and compute per episode. [D40]"""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype of the policy, reference, value and reward models (lean's LoRA adapter and value
    head stay float32). float32, or bfloat16 (half the memory, bf16 compute; full fine-tuning in
    bf16 loses small updates to rounding). Mixed precision (float32 weights, bf16 or fp16 compute)
    is accelerate's: `accelerate launch --mixed_precision bf16`; the rollout, the reference, the
    reward and the update then all run under that one autocast [D50]. float16 is refused: PPO's
    update has no loss scaling (use float32 with --mixed_precision fp16)."""
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(enabled=True))
    """Adapter of `lean` mode (`enabled` must stay true there); `standard` does not read it."""
    shared_layers: float = 0.5
    """`lean` only: the fraction of decoder layers, from the bottom, that get no adapter. Policy and
    reference share them (TRL's `num_shared_layers` idea), so their output is computed once per
    rollout, while sampling, and reused by the reference pass and by every training pass; only the
    layers above carry LoRA and are recomputed and back-propagated. 0 = adapters on every layer. [D48]"""

    # --- reward ---
    reward_source: Literal["reward_model", "direct"] = "reward_model"
    """Reward of the RLAIF arm (`rl`). `reward_model`: the trained RM (reward/model) with its
    reward_bias. `direct`: d-RLAIF (Lee et al. 2023, §2.3): the AI labeler rates each summary 1-10
    and the reward is the probability-weighted mean score rescaled to [-1, 1]; no RM. [D45]
    The RLHF arm (`rl_rlhf`) always uses reward_rlhf/model."""
    direct_labeler: LabelerSettings | None = None
    """Judge of reward_source `direct`; None = label.labeler. Any backend: hf_local reads the full
    next-token distribution over the ten scores, openai_api and vllm_offline the top
    `top_logprobs` tokens (a summary with no score among them scores 0). [D45]"""
    direct_discourage_length: bool = False
    """Add to the built-in rating preamble a sentence against preferring longer summaries (as
    label.discourage_length). Off by default. [L09]"""
    direct_prompt_file: str | None = None
    """A prompt template file for the 1-10 rating (format of label.prompt_file; placeholders {text}
    and {summary}; choices, if given, are the numeric scores) used instead of the built-in one. [L09]"""

    # --- prompts ---
    prompts: list[DatasetConfig] = field(default_factory=list)
    """Posts to optimise on; empty = the prompt pool's posts the RM never saw: data.prompts from
    index pairs.num_posts on (all of data.prompts when num_posts is None)."""

    # --- rollout ---
    total_episodes: int = 64
    """Responses sampled over the whole run; steps = total_episodes // (rollout_batch_size x group_size x processes)."""
    rollout_batch_size: int = 8
    """Prompts per process per step (group_size responses each)."""
    response_length: int = 53
    """Tokens sampled per response, then cut after the first EOS (Huang et al. 2024: 53). [D02]"""
    temperature: float = 0.7
    """Sampling temperature; logits are divided by it for every log-prob too (Huang et al. 2024: 0.7). [D14]"""
    forward_batch_size: int = 8
    """Sequences per no-grad forward pass (reference, reward, value) while scoring a rollout."""

    # --- reward shaping ---
    kl_coef: float = 0.05
    """beta in r_t = -beta * KL_t against the SFT policy, on every token (Huang et al. 2024: 0.05) [D05];
    RLOO: on the sequence's summed KL [D52]; GRPO: the weight of the k3 KL in the loss [D53]."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """k1 = logp - ref_logp (reference); k3 = (r - 1) - log r, never negative (Schulman 2020). [D05]
    GRPO's loss always uses k3 (its section fixes this field)."""
    missing_eos_penalty: float = 1.0
    """Subtracted from the score of a response that never emits EOS. [D04]"""
    whiten_rewards: bool = False
    """Normalise the per-token rewards (mean kept) before GAE. [D09]"""

    # --- optimisation ---
    ppo: PPOSettings = field(default_factory=PPOSettings)
    """Epochs, minibatches, clipping, loss weights and the optimiser (RLOO and GRPO read the
    schedule, cliprange and the optimiser)."""

    # --- logging, checkpoints, evaluation ---
    sample_steps: int = 10
    """Append a few prompts with their sampled responses and scores to rl/samples.jsonl every N steps."""
    num_samples: int = 2
    """Responses written per sampling step."""
    save_steps: int = 10
    """Checkpoint (trainable weights, optimizer, scheduler, RNG) every N PPO steps; a rerun resumes from the last."""
    save_total_limit: int = 2
    """Keep at most this many checkpoints on disk."""
    snapshots: int = 0
    """Save the policy at this many evenly spaced steps (trajectory/step-K/; lean as its adapter), the
    last at the end: the points of the frontier stage. 0 = none. [F01][D55]"""
    heldout_posts: int = 64
    """After training, greedy summaries of the first N data.eval posts by the SFT model and by the
    policy, scored by the reward, with the policy's KL to SFT on them, go into rl/metrics.json
    (0 or no data.eval = off)."""


@dataclass
class RLOOConfig(RLConfig):
    """Stages `rloo` (RLAIF arm) and `rloo_rlhf` (RLHF arm): RLOO of the SFT policy (Ahmadian et al.
    2024, arXiv 2402.14740), with every other setting of `rl`: same models, reward sources, memory
    modes, prompts and checks. [D51][D52]"""

    algorithm: Literal["rloo"] = "rloo"
    """Fixed by the section."""
    group_size: int = 4
    """k samples per prompt; 4 is Ahmadian et al.'s TL;DR setting (they report k = 2 and 4)."""
    ppo: PPOSettings = field(default_factory=lambda: PPOSettings(ppo_epochs=1))
    """One pass per rollout by default (TRL's RLOOTrainer num_iterations=1); cliprange and the optimiser as `rl`."""


@dataclass
class GRPOConfig(RLConfig):
    """Stages `grpo` (RLAIF arm) and `grpo_rlhf` (RLHF arm): GRPO of the SFT policy (Shao et al.
    2024, arXiv 2402.03300), or Dr. GRPO (`dr_grpo`), with every other setting of `rl`. [D51][D53][D54]"""

    algorithm: Literal["grpo"] = "grpo"
    """Fixed by the section."""
    group_size: int = 4
    """k samples per prompt (the GRPO paper samples 64 per question for maths; 4 keeps TL;DR runs small)."""
    kl_coef: float = 0.04
    """Weight of the k3 KL in the loss; 0.04 is Shao et al. 2024's (§4.2). [D53]"""
    kl_estimator: Literal["k3"] = "k3"
    """GRPO's KL is k3 (Shao et al. 2024, eq. 4); fixed by the section."""
    ppo: PPOSettings = field(default_factory=lambda: PPOSettings(ppo_epochs=1))
    """One pass per rollout by default (Shao et al. 2024 §4.2: a single update per exploration
    stage; TRL's num_iterations=1); cliprange and the optimiser as `rl`."""
