"""Pairs as token ids, batched, and the summed log-probability of each pair's two responses.

The two responses of a pair share their prompt, so the prompt goes through the decoder once: one
forward over the left-padded prompts fills a KV cache, the cache is repeated for the two responses
(rows a_0, b_0, a_1, b_1, ...), and a second forward runs only the response tokens on it. Gradients
flow through the cache into the prompt's forward, so this is the same function as running every
prompt + response row by itself, on (Lp + 2 Lr) tokens per pair instead of 2 (Lp + Lr). The
vocabulary head then runs only on the hidden states that predict a response token, flattened to
(N, H): no (B, L, V) logits over the prompt or the padding [P02].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from rlaif.models import position_ids
from rlaif.rl.policy import backbone, hf_model


@dataclass(frozen=True)
class EncodedPair:
    prompt: tuple[int, ...]
    a: tuple[int, ...]
    """Response a: its tokens, ending with EOS where it ended."""
    b: tuple[int, ...]


def response_ids(tokenizer, summary: str, max_tokens: int) -> tuple[int, ...]:
    """ " " + summary, cut to `max_tokens`, then EOS: the target the SFT stage trains and the input
    the reward model reads (rlaif.reward.model.encode), so DPO scores what SFT wrote."""
    text = summary.strip()
    ids = tokenizer(" " + text, add_special_tokens=False).input_ids[:max_tokens] if text else []
    return (*ids, tokenizer.eos_token_id)


def encode_pairs(tokenizer, pairs: list[dict], max_response_tokens: int) -> list[EncodedPair]:
    """Pairs {prompt, summary_a, summary_b} as token ids (prompts already fit data.max_prompt_tokens)."""
    return [
        EncodedPair(
            tuple(tokenizer(p["prompt"], add_special_tokens=False).input_ids),
            response_ids(tokenizer, p["summary_a"], max_response_tokens),
            response_ids(tokenizer, p["summary_b"], max_response_tokens),
        )
        for p in pairs
    ]


@dataclass
class PairBatch:
    prompt_ids: torch.Tensor
    """(B, Lp) prompts, left-padded: every prompt ends in the last column."""
    prompt_mask: torch.Tensor
    """(B, Lp)"""
    response_ids: torch.Tensor
    """(2B, Lr) responses, rows a_0, b_0, a_1, b_1, ..., right-padded."""
    response_mask: torch.Tensor
    """(2B, Lr)"""

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The fields in order (plain tensors: DDP moves and inspects its inputs)."""
        return self.prompt_ids, self.prompt_mask, self.response_ids, self.response_mask


def pack(pairs: list[EncodedPair], pad_token_id: int, device) -> PairBatch:
    """Pairs -> one batch on `device`."""
    if not pairs:
        raise ValueError("no pairs to pack")
    B = len(pairs)
    lp = max(len(p.prompt) for p in pairs)
    lr = max(len(r) for p in pairs for r in (p.a, p.b))
    prompt_ids = torch.full((B, lp), pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros((B, lp), dtype=torch.long)
    response = torch.full((2 * B, lr), pad_token_id, dtype=torch.long)
    response_mask = torch.zeros((2 * B, lr), dtype=torch.long)
    for i, p in enumerate(pairs):
        if not p.prompt or not p.a or not p.b:
            raise ValueError(f"pair {i}: a prompt and two responses of at least one token each are needed")
        prompt_ids[i, lp - len(p.prompt) :] = torch.tensor(p.prompt)
        prompt_mask[i, lp - len(p.prompt) :] = 1
        for j, r in enumerate((p.a, p.b)):
            response[2 * i + j, : len(r)] = torch.tensor(r)
            response_mask[2 * i + j, : len(r)] = 1
    return PairBatch(*(t.to(device) for t in (prompt_ids, prompt_mask, response, response_mask)))


def pair_logprobs(model: nn.Module, batch: PairBatch) -> torch.Tensor:
    """(B, 2): sum over each response's tokens of log pi(token | prompt, earlier tokens), for a and b
    of every pair, float32. A causal LM with or without a peft wrapper. [P02]"""
    decoder, config = backbone(model), hf_model(model).config
    cache = DynamicCache(config=config)
    prompt = decoder(
        input_ids=batch.prompt_ids,
        attention_mask=batch.prompt_mask,
        position_ids=position_ids(batch.prompt_mask),
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state[:, -1]  # (B, H): the state that predicts each response's first token
    cache.batch_repeat_interleave(2)  # a and b of a pair read the same prompt keys and values
    prompt_mask = batch.prompt_mask.repeat_interleave(2, dim=0)  # (2B, Lp)
    start = prompt_mask.sum(1, keepdim=True)  # (2B, 1) first response position
    positions = start + torch.arange(batch.response_ids.size(1), device=start.device)  # (2B, Lr)
    hidden = decoder(
        input_ids=batch.response_ids,
        attention_mask=torch.cat([prompt_mask, batch.response_mask], dim=1),
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state  # (2B, Lr, H): position t predicts response token t + 1
    predictors = torch.cat([prompt.repeat_interleave(2, dim=0).unsqueeze(1), hidden[:, :-1]], dim=1)  # (2B, Lr, H)
    real = batch.response_mask.bool()
    logits = hf_model(model).get_output_embeddings()(predictors[real]).float()  # (N, V)
    targets = batch.response_ids[real]  # (N,)
    # x[y] - logsumexp(x) is log_softmax(x)[y] without a second (N, V) tensor
    token_logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # (N,)
    rows = torch.arange(real.size(0), device=real.device).unsqueeze(1).expand_as(real)[real]  # (N,)
    sums = torch.zeros(real.size(0), dtype=torch.float32, device=token_logps.device).index_add(0, rows, token_logps)
    return sums.view(-1, 2)  # (B, 2)


class PairScorer(nn.Module):
    """The policy as one module whose forward returns pair log-probs, so DDP (which only syncs
    gradients of forwards it runs) wraps it and one optimizer steps it."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        """The fields of a PairBatch, in order."""
        return pair_logprobs(self.policy, PairBatch(*tensors))
