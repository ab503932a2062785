"""The one place that builds a PPO run's models: `build_rl_models` returns a fully wired `RLModels`.

It loads the reward source first (its score head and bias seed the critic [D42][D49]), then the
policy of `settings.mode` with its reference and value model, puts every model on the
accelerator's device (the frozen ones through `accelerator.prepare_model`; the trainable module
is moved here and DDP-wrapped by the trainer, which builds the optimizer over it) and records the
precision the run computes in [D50].
"""

from __future__ import annotations

from torch import nn

from rlaif.config import LabelerSettings, RLConfig
from rlaif.config.validate import check_rl_precision
from rlaif.models import disable_dropout, load_causal_lm
from rlaif.rl.policy import (
    PolicyAndValue,
    RewardFn,
    RLModels,
    backbone,
    check_top_forward,
    freeze,
    lean_adapter,
    value_head_from,
)


def build_rl_models(
    settings: RLConfig,
    sft_dir: str,
    reward_model_dir: str | None,
    direct_labeler: LabelerSettings | None,
    tokenizer,
    accelerator,
) -> RLModels:
    """The models of `settings.mode` on `accelerator.device`. The reward is the reward model in
    `reward_model_dir`, or, with `direct_labeler` (and no reward model), d-RLAIF's direct rating
    [D45]. PPO gets a critic; RLOO and GRPO none (no value model, no value head [D51]). Seed torch's
    global RNG first: LoRA and head initialisation draw from it."""
    critic = settings.algorithm == "ppo"
    if (reward_model_dir is None) == (direct_labeler is None):
        raise ValueError("build_rl_models needs exactly one reward: a reward model folder or a direct labeler")
    check_rl_precision(settings.dtype, accelerator.mixed_precision)
    reward, score_head, reward_bias, shared_adapter = _reward_source(
        settings, sft_dir, reward_model_dir, direct_labeler, tokenizer
    )

    policy = load_causal_lm(sft_dir, tokenizer, settings.dtype)
    policy.config.use_cache = False  # training forwards need no cache; sampling makes its own
    if settings.mode == "lean":
        policy.requires_grad_(False)
        policy, shared_layers = lean_adapter(policy, settings)
        disable_dropout(policy)
        if shared_adapter is not None:
            reward, score_head, reward_bias = _shared_base_reward(policy, shared_adapter, reward_model_dir, settings)
        # the head reads the policy's states: an RM of another width gives it no start (value_head_from)
        head = value_head_from(score_head, policy.config.hidden_size, reward_bias) if critic else None
        trainable = PolicyAndValue(policy, head, None, shared_layers)
        reference = None
    else:
        reference = freeze(load_causal_lm(sft_dir, tokenizer, settings.dtype))
        value_model, head = None, None
        if critic and reward_model_dir is not None:
            from rlaif.reward.model import load_reward_model

            # a second copy of the RM, trained: its backbone here, its score head and bias in the value head
            value_model, _ = load_reward_model(reward_model_dir, settings.dtype)
            value_model = backbone(value_model).train()
        elif critic:
            value_model = backbone(load_causal_lm(sft_dir, tokenizer, settings.dtype))
        if value_model is not None:
            disable_dropout(value_model)
            head = value_head_from(score_head, value_model.config.hidden_size, reward_bias)  # the RM's width
        trainable = PolicyAndValue(policy, head, value_model)

    # one device for every model [D50]: the frozen ones through the accelerator (device placement and,
    # under mixed precision, its autocast on their forward); the trainable one is moved before the
    # optimizer is built over it and prepared (DDP) by the trainer
    trainable.to(accelerator.device)
    frozen = [reference] if reference is not None else []
    # every model a reward source holds (the RM, lean's shared RM's score head, d-RLAIF's labeler model),
    # except the policy that lean's shared-base RM runs on
    frozen += [module for module in vars(reward).values() if isinstance(module, nn.Module) and module is not policy]
    for module in frozen:
        accelerator.prepare_model(module, evaluation_mode=True)
    if trainable.shared_layers:
        check_top_forward(trainable)
    return RLModels(
        trainable,
        reference,
        reward,
        settings.mode,
        device=accelerator.device,
        autocast=accelerator.autocast,
        full_precision=settings.dtype == "float32" and accelerator.mixed_precision == "no",
    )


def _reward_source(settings: RLConfig, sft_dir: str, reward_model_dir, direct_labeler, tokenizer):
    """(reward fn or None, RM score head or None, reward bias, shared-base adapter folder or None).
    None as reward fn: lean mode runs the RM's LoRA adapter on the policy's base, set up once the
    policy exists (_shared_base_reward)."""
    if direct_labeler is not None:
        from rlaif.rl.rewards import DirectReward

        return DirectReward(direct_labeler, settings), None, 0.0, None
    from rlaif.rl.rewards import RewardModelReward, shared_base_adapter

    if settings.mode == "lean" and (adapter := shared_base_adapter(reward_model_dir, sft_dir)) is not None:
        return None, None, 0.0, adapter
    from rlaif.reward.model import load_reward_model

    model, rm_tokenizer = load_reward_model(reward_model_dir, settings.dtype)
    reward = RewardModelReward(freeze(model), rm_tokenizer, tokenizer, settings.forward_batch_size)
    return reward, model.score, reward.bias, None


def _shared_base_reward(
    policy, adapter, reward_model_dir: str, settings: RLConfig
) -> tuple[RewardFn, nn.Linear, float]:
    """Lean mode with a LoRA RM on the same base: the RM becomes a second adapter of the policy [D40];
    its score head and bias seed the value head [D42][D49]."""
    from transformers import AutoConfig

    from rlaif.rl.rewards import SharedBaseReward

    reward = SharedBaseReward(
        policy, adapter, AutoConfig.from_pretrained(reward_model_dir), settings.forward_batch_size
    )
    return reward, reward.score, reward.bias
