"""The models PPO needs, in two memory modes [D40], behind one interface (`RLModels`); rlaif.rl.build
makes them.

standard  four separate models, as TRL 0.13's PPOTrainer: the policy (sft/model, fully trained),
          the reference (sft/model, frozen), the value model (reward/model: its backbone and its
          scalar head, fully trained) and the reward model (frozen).
lean      one frozen base (sft/model) with a LoRA adapter: the policy. The value is a linear head
          on the policy's last hidden state (one forward gives log-probs and values), initialised
          from the RM's score head and bias. The reference is the same base with the adapter
          switched off. The reward model is a separate frozen model, or a second adapter on the
          same base when it was LoRA-trained on it.

Every forward runs the backbone (`model.model`) and applies a head only where it is needed, so the
(B, L, V) logits of the prompt positions are never built [D41].
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import DynamicCache

from rlaif.config import RLConfig
from rlaif.models import (
    decoder_layers,
    disable_dropout,
    kv_cache_kwargs,
    linear_names,
    merge_adapter,
    position_ids,
)
from rlaif.rl.losses import logprobs_from_logits

# (query_responses (B, L), attention_mask (B, L), last_index (B,), prompts, responses) -> scores (B,); a reward
# source also takes keywords context_length and group_size (rows in runs of group_size samples of one prompt,
# whose first context_length columns it may encode once per run [D56]) and may ignore them
RewardFn = Callable[..., torch.Tensor]


def hf_model(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (peft injects its layers in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def backbone(model: nn.Module) -> nn.Module:
    """The decoder stack without the head: LlamaForCausalLM.model, GPT2LMHeadModel.transformer,
    LlamaForSequenceClassification.model (a bare LlamaModel is its own base_model)."""
    return hf_model(model).base_model


def last_hidden(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, shared_prefix: int = 0, group_size: int = 1
) -> torch.Tensor:
    """Final-norm hidden states, (B, L, H). With `group_size` k > 1 the rows come in runs of k that
    share their first `shared_prefix` columns (k samples of one prompt): those columns are encoded once
    per run and their KV cache copied to the k rows, then the rest runs on every row [D56]. The same
    states up to float rounding, for a fraction of the prompt's work."""
    decoder, positions = backbone(model), position_ids(attention_mask)
    B, k, P = input_ids.size(0), group_size, shared_prefix
    if k <= 1 or P <= 0 or B % k:
        return decoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False
        ).last_hidden_state
    prefix = input_ids[:, :P]
    if not torch.equal(prefix, prefix[::k].repeat_interleave(k, dim=0)):
        raise ValueError(f"last_hidden: the {B} rows are not runs of {k} with the same first {P} tokens")
    cache = DynamicCache(config=hf_model(model).config)
    cache_kwargs = kv_cache_kwargs(decoder, cache)
    head = decoder(
        input_ids=prefix[::k], attention_mask=attention_mask[::k, :P], position_ids=positions[::k, :P], **cache_kwargs
    ).last_hidden_state  # (B / k, P, H)
    cache.batch_repeat_interleave(k)
    tail = decoder(
        input_ids=input_ids[:, P:], attention_mask=attention_mask, position_ids=positions[:, P:], **cache_kwargs
    ).last_hidden_state  # (B, L - P, H)
    return torch.cat([head.repeat_interleave(k, dim=0), tail], dim=1)


@contextlib.contextmanager
def _top_layers(decoder: nn.Module, k: int):
    """The decoder with only its layers k.. (the same modules), so that a forward fed with
    inputs_embeds = the inputs of layer k runs just the top of the stack, with the model's own
    mask, rotary and norm code."""
    name, full = decoder_layers(decoder)
    setattr(decoder, name, nn.ModuleList(list(full)[k:]))
    try:
        yield
    finally:
        setattr(decoder, name, full)


def top_hidden(model: nn.Module, layer_inputs: torch.Tensor, attention_mask: torch.Tensor, k: int) -> torch.Tensor:
    """Final-norm hidden states (B, L, H) from the inputs of decoder layer k (B, L, H) [D48]."""
    decoder = backbone(model)
    with _top_layers(decoder, k):
        out = decoder(
            inputs_embeds=layer_inputs,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            use_cache=False,
        )
    return out.last_hidden_state


def response_hidden(
    model: nn.Module,
    query_responses: torch.Tensor,
    attention_mask: torch.Tensor,
    context_length: int,
    layer_inputs: torch.Tensor | None = None,
    k: int = 0,
    group_size: int = 1,
) -> torch.Tensor:
    """Final-norm hidden states at the response positions, (B, T, H): position t holds the state
    *before* response token t [D01]. `layer_inputs` (B, L-1, H), the inputs of decoder layer k at
    positions 0..L-2 saved while sampling, replaces the bottom of the stack [D48]. `group_size`: rows
    in runs of that many samples of one prompt, encoded once per run (see last_hidden) [D56]."""
    if layer_inputs is not None:
        return top_hidden(model, layer_inputs, attention_mask[:, :-1], k)[:, context_length - 1 :]
    return last_hidden(model, query_responses, attention_mask, context_length, group_size)[:, context_length - 1 : -1]


@contextlib.contextmanager
def capture_layer_inputs(model: nn.Module, k: int):
    """Collects the hidden states fed to decoder layer k by every forward inside the block, in a
    list (one (B, L_call, H) tensor per call) [D48]."""
    captured: list[torch.Tensor] = []
    hook = decoder_layers(backbone(model))[1][k].register_forward_pre_hook(
        lambda module, args, kwargs: captured.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
    )
    try:
        yield captured
    finally:
        hook.remove()


def head_values(value_head: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """(..., H) hidden states -> (...,) float32 values. The hidden states are cast to the head's dtype:
    lean's head is a float32 trainable on a bfloat16 base's states [D50]."""
    return value_head(hidden.to(value_head.weight.dtype)).squeeze(-1).float()


class PolicyAndValue(nn.Module):
    """Everything trainable as one module, so DDP wraps one thing and one optimizer steps it."""

    def __init__(
        self, policy: nn.Module, value_head: nn.Linear | None, value_model: nn.Module | None, shared_layers: int = 0
    ):
        super().__init__()
        self.policy = policy
        self.value_head = value_head
        """Linear(H, 1) with a bias: the critic starts as the reward model, bias included [D49]. None:
        no critic (RLOO, GRPO [D51]), and forward returns no values."""
        self.value_model = value_model
        """None (lean): the value head reads the policy's own hidden states."""
        self.shared_layers = shared_layers
        """lean: decoder layers below this index have no adapter (shared with the reference) [D48]."""

    def forward(
        self,
        query_responses: torch.Tensor,
        attention_mask: torch.Tensor,
        context_length: int,
        temperature: float,
        layer_inputs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Policy logits divided by the temperature [D14] and values, at the response positions:
        (B, T, V) and (B, T), float32 (values None without a critic); `layer_inputs`: see response_hidden."""
        hidden = response_hidden(
            self.policy, query_responses, attention_mask, context_length, layer_inputs, self.shared_layers
        )
        logits = hf_model(self.policy).get_output_embeddings()(hidden).float() / temperature
        if self.value_head is None:
            return logits, None
        if self.value_model is not None:
            hidden = response_hidden(self.value_model, query_responses, attention_mask, context_length)
        return logits, head_values(self.value_head, hidden)

    @torch.no_grad()
    def values(self, query_responses: torch.Tensor, attention_mask: torch.Tensor, context_length: int) -> torch.Tensor:
        """Values alone (standard mode's rollout, where sampling does not produce them). (B, T)"""
        model = self.value_model if self.value_model is not None else self.policy
        return head_values(self.value_head, response_hidden(model, query_responses, attention_mask, context_length))

    @property
    def values_from_policy(self) -> bool:
        return self.value_model is None


@dataclass
class RLModels:
    """Every model of one RL run (PPO, RLOO or GRPO), on one device, and the precision they compute in [D50]."""

    trainable: PolicyAndValue
    reference: nn.Module | None
    """The frozen SFT policy; None in lean mode (the policy with its adapter off)."""
    reward: RewardFn
    mode: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where every model, generator and tensor of the run lives (the accelerator's device)."""
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    """The mixed-precision context of the accelerator (a no-op without mixed precision); every
    forward of the run, rollout and update alike, runs inside it [D50]."""
    full_precision: bool = True
    """float32 weights and no autocast: then the log-probs and values computed while sampling equal
    the update's forward to ~1e-6 and are used as they are [D43]; otherwise the rollout recomputes
    them with the update's own forward [D50]."""

    @torch.no_grad()
    def ref_logprobs(
        self,
        query_responses: torch.Tensor,
        attention_mask: torch.Tensor,
        context_length: int,
        responses: torch.Tensor,
        temperature: float,
        layer_inputs: torch.Tensor | None = None,
        group_size: int = 1,
    ) -> torch.Tensor:
        """Log-probs of the response tokens under the SFT policy, (B, T) [D05][D14]; with
        `layer_inputs` (lean), only the layers above the shared ones run [D48]; `group_size`: rows in
        runs of that many samples of one prompt, whose prompt is encoded once [D56]."""
        model = self.reference_model()
        with self.reference_context():
            hidden = response_hidden(
                model, query_responses, attention_mask, context_length, layer_inputs, self.trainable.shared_layers,
                group_size,
            )  # fmt: skip
            logits = hf_model(model).get_output_embeddings()(hidden).float() / temperature
        return logprobs_from_logits(logits, responses)

    def reference_context(self):
        """Lean mode computes the reference with the policy's adapter switched off [D40]."""
        return self.trainable.policy.disable_adapter() if self.reference is None else contextlib.nullcontext()

    def reference_model(self) -> nn.Module:
        """The model to run inside reference_context() to get the SFT policy."""
        return self.reference if self.reference is not None else self.trainable.policy


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    model.requires_grad_(False)
    disable_dropout(model)
    return model


def value_head_from(score_head: nn.Linear | None, hidden_size: int, bias: float) -> nn.Linear:
    """A scalar value head with a bias, float32. With the RM's score head (same width), a copy of it
    and `bias` = the RM's reward_bias, so the critic starts as the reward model, bias included
    [D42][D49]; without one (a direct reward, or an RM of another width), zero: V starts at 0."""
    head = nn.Linear(hidden_size, 1, bias=True)
    with torch.no_grad():
        if score_head is not None and score_head.weight.shape == head.weight.shape:
            head.weight.copy_(score_head.weight.float())
            head.bias.fill_(bias)
        else:
            head.weight.zero_()
            head.bias.zero_()
    return head


def lean_adapter(policy: nn.Module, settings: RLConfig) -> tuple[nn.Module, int]:
    """The policy with a LoRA adapter on decoder layers k.. only, k = shared_layers x depth [D40][D48]."""
    from peft import LoraConfig, get_peft_model

    blocks_name, layers = decoder_layers(backbone(policy))
    k = int(settings.shared_layers * len(layers))
    targets = settings.lora.target_modules
    if targets == ["all-linear"]:  # peft's shorthand cannot be combined with a layer range
        targets = linear_names(layers[0])
    config = LoraConfig(
        r=settings.lora.r,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        layers_to_transform=list(range(k, len(layers))),
        layers_pattern=blocks_name,
    )
    return get_peft_model(policy, config), k


@torch.no_grad()
def check_top_forward(policy_value: PolicyAndValue) -> None:
    """Running only the top layers from saved layer inputs must equal the full forward; a model
    whose forward does more than embed -> layers -> norm (e.g. scales its embeddings, or adds
    position embeddings as GPT-2 does) fails here."""
    ids = torch.arange(3, 11, device=next(policy_value.policy.parameters()).device).unsqueeze(0)  # (1, 8)
    mask = torch.ones_like(ids)
    with capture_layer_inputs(policy_value.policy, policy_value.shared_layers) as captured:
        full = last_hidden(policy_value.policy, ids, mask)
    top = top_hidden(policy_value.policy, captured[0], mask, policy_value.shared_layers)
    if not torch.allclose(full.float(), top.float(), atol=1e-4, rtol=1e-4):
        raise ValueError(
            f"{type(backbone(policy_value.policy)).__name__}: running the top layers alone does not reproduce the "
            "full forward; set rl.shared_layers=0 for this model"
        )


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters the optimizer updates (all of them in standard mode, adapter + head in lean)."""
    return {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}


def save_policy(models: RLModels, tokenizer, out: Path) -> None:
    """rl/model/: a plain HF folder. Lean merges the adapter into the base (a copy of the adapter
    is kept in rl/adapter/, with the value head in value_head.safetensors)."""
    from safetensors.torch import save_file

    policy = models.trainable.policy
    if models.mode == "lean":
        adapter_dir = out.parent / "adapter"
        policy = merge_adapter(policy, adapter_dir, selected_adapters=[policy.active_adapter])
        head = models.trainable.value_head
        if head is not None:  # RLOO and GRPO have no critic
            save_file(
                {"weight": head.weight.detach().contiguous().cpu(), "bias": head.bias.detach().contiguous().cpu()},
                str(adapter_dir / "value_head.safetensors"),
            )
    policy.config.use_cache = True
    policy.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
