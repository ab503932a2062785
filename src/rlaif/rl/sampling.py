"""Batched sampling with a KV cache that also returns the log-prob of each sampled token and,
when the value head reads the policy's hidden states (lean mode), each token's value.

Our own loop instead of `generate()`: the hidden state that yields a token's logits also yields
its value, so a lean rollout needs no extra forward pass for log-probs or values [D43]; the RNG is
an explicit `torch.Generator` whose state a checkpoint saves, so a resumed run samples exactly what
an uninterrupted one would; k samples of one prompt (RLOO, GRPO, OAIF, best-of-n) read the
prompt once: it is encoded for one row and its KV cache copied to the k rows; and the KV cache is
allocated once for the whole response, where transformers' DynamicCache copies all of it at every
token (torch.cat): the CPU profiler put ~half of the loop's self time there, but the wall-clock
decode step measured 115-127 ms with either cache on 2 cores (within this machine's noise) [D56].
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from rlaif.models import kv_cache_kwargs, position_ids
from rlaif.rl.policy import backbone, capture_layer_inputs, head_values, hf_model


@dataclass
class Samples:
    responses: torch.Tensor
    """(B, T) sampled ids; T < response_length when every row has emitted EOS before the cap
    (what follows would be cut anyway [D02])."""
    logprobs: torch.Tensor
    """(B, T) log-prob of each sampled token under logits / temperature [D14]."""
    values: torch.Tensor | None
    """(B, T) value of the state before each token, or None without a value head."""
    layer_inputs: torch.Tensor | None = None
    """(B, Lq + T - 1, H) inputs of decoder layer `collect_layer` at every position fed to the model
    (the last sampled token is never fed), or None [D48]."""


@torch.no_grad()
def sample(
    policy: nn.Module,
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    response_length: int,
    temperature: float,
    eos_token_id: int,
    pad_token_id: int,
    generator: torch.Generator | None = None,
    value_head: nn.Linear | None = None,
    collect_layer: int = 0,
    merge_lora: bool = True,
    group_size: int = 1,
) -> Samples:
    """Sample `response_length` tokens after left-padded `queries` (B, Lq) [D01]. temperature 0
    is greedy. Rows keep sampling after their EOS, as the reference does, until every row has one.
    `generator` must be on the queries' device (torch.multinomial draws there). `collect_layer` > 0
    keeps the inputs of that decoder layer (lean's shared layers [D48]). `merge_lora`: run each LoRA
    layer as one merged matmul (exact in float32 only: see merged_lora). `group_size` k > 1: the
    queries come in runs of k identical rows (k samples per prompt), whose prompt is encoded once [D56]."""
    B = queries.size(0)
    if group_size > 1 and (
        B % group_size
        or not torch.equal(queries, queries[::group_size].repeat_interleave(group_size, dim=0))
        or not torch.equal(query_mask, query_mask[::group_size].repeat_interleave(group_size, dim=0))
    ):
        raise ValueError(f"group_size={group_size}: the {B} query rows are not runs of {group_size} identical rows")
    capture = capture_layer_inputs(policy, collect_layer) if collect_layer else contextlib.nullcontext([])
    merge = merged_lora(policy) if merge_lora else contextlib.nullcontext()
    with capture as captured, merge:
        out = _sample(
            policy, queries, query_mask, response_length, temperature, eos_token_id, pad_token_id, generator, value_head,
            group_size,
        )  # fmt: skip
    if collect_layer:
        if group_size > 1:
            captured[0] = captured[0].repeat_interleave(group_size, dim=0)  # the prompt, encoded once per group
        out.layer_inputs = torch.cat(captured, dim=1)  # (B, Lq + T - 1, H)
    return out


@contextlib.contextmanager
def merged_lora(model: nn.Module):
    """While sampling, each LoRA layer runs one matmul with W + scale * B @ A, computed once into a
    temporary tensor, instead of peft's three matmuls and its Python per token. Same numbers up to
    float rounding; the base weights are never written, so the reference (adapter off) stays exact.
    The extra memory (one copy of the adapted weights) is freed on exit. No-op without LoRA. [D43]
    Only for float32 compute: in bfloat16 (weights or autocast) the merged weight is rounded once
    more, so a small adapter delta can vanish from it while peft's separate path keeps it, and the
    samples would come from another policy than the one the update trains [D50]."""
    patched = []
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if (
            not (hasattr(module, "get_delta_weight") and isinstance(base, nn.Linear))
            or base.weight.dtype != torch.float32  # see above: peft's own path for a reduced-precision base
            or module.merged
            or module.disable_adapters
        ):
            continue
        active = [a for a in module.active_adapters if a in module.lora_A]
        if active:
            with torch.no_grad():
                weight = base.weight + sum(module.get_delta_weight(a) for a in active)
            module.forward = functools.partial(F.linear, weight=weight, bias=base.bias)  # shadows the class method
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values live in buffers sized for the whole sampling run: a token
    is written in place instead of concatenated onto a copy of everything before it. The model sees
    the filled part, a view, so attention and masks are those of a DynamicLayer."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        B, H, _, D = key_states.shape
        self.key_buffer = key_states.new_empty(B, H, self.capacity, D)
        self.value_buffer = value_states.new_empty(B, value_states.size(1), self.capacity, value_states.size(-1))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.size(-2)
        if end > self.capacity:
            raise RuntimeError(f"KV cache of {self.capacity} positions, asked for {end}")
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self.keys, self.values = self.key_buffer[:, :, : self.length], self.value_buffer[:, :, : self.length]


def kv_cache(model_config, capacity: int) -> DynamicCache:
    """transformers' DynamicCache for the model, its plain (full-attention) layers preallocated for
    `capacity` positions; sliding-window and other special layers are left as transformers made them."""
    cache = DynamicCache(config=model_config)
    cache.layers = [PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    if not cache.layers:  # a config without layer types: layers are made as the model first writes them
        cache.layer_class_to_replicate = functools.partial(PreallocatedLayer, capacity)
    return cache


def _sample(
    policy, queries, query_mask, response_length, temperature, eos_token_id, pad_token_id, generator, value_head, k
) -> Samples:
    model, decoder = hf_model(policy), backbone(policy)
    lm_head = model.get_output_embeddings()
    B = queries.size(0)
    cache = kv_cache(model.config, queries.size(1) + response_length)
    cache_kwargs = kv_cache_kwargs(decoder, cache)
    mask = query_mask.long()
    positions = position_ids(mask)  # (B, Lq) as generate() assigns them
    responses = torch.full((B, response_length), pad_token_id, dtype=torch.long, device=queries.device)
    logprobs = torch.zeros(B, response_length, device=queries.device)
    values = torch.zeros(B, response_length, device=queries.device) if value_head is not None else None
    done = torch.zeros(B, dtype=torch.bool, device=queries.device)
    # The prompt pass, once per group of identical rows: the prompt holds most of a rollout's tokens
    # (~150 against <= 48 sampled), and its keys and values are the same for every row of a group [D56]
    out = decoder(input_ids=queries[::k], attention_mask=mask[::k], position_ids=positions[::k], **cache_kwargs)
    hidden = out.last_hidden_state[:, -1]  # (B / k, H): the state before the first token
    if k > 1:
        cache.batch_repeat_interleave(k)
        hidden = hidden.repeat_interleave(k, dim=0)  # (B, H)
    steps = response_length
    for t in range(response_length):
        logits = lm_head(hidden).float()  # (B, V)
        if temperature > 0:
            logits = logits / temperature
            token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
        else:
            token = logits.argmax(dim=-1, keepdim=True)
        responses[:, t] = token[:, 0]
        logprobs[:, t] = torch.log_softmax(logits, dim=-1).gather(-1, token)[:, 0]
        if values is not None:
            values[:, t] = head_values(value_head, hidden)
        done |= token[:, 0] == eos_token_id
        if done.all():
            steps = t + 1
            break  # everything after each row's first EOS is cut [D02]; no need to sample it
        if t + 1 == response_length:
            break  # the last token is never fed: nothing reads the state after it
        mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
        positions = positions[:, -1:] + 1
        out = decoder(input_ids=token, attention_mask=mask, position_ids=positions, **cache_kwargs)
        hidden = out.last_hidden_state[:, -1]  # (B, H): the state before token t + 1
    values = values[:, :steps] if values is not None else None
    return Samples(responses[:, :steps], logprobs[:, :steps], values)
