"""Reward-model scores of several summaries of one post, with the post encoded once.

The evaluation scores every system's summary of each post (sft, rl, rl_rlhf, reference): four
inputs that share their prompt, ~250 of ~300 tokens. Here the prompt goes through the model once,
its KV cache is repeated for the summaries, and only `" " + summary + EOS` is run on top, at the
positions it would have had. The token ids are those of `reward_model.encode`, so the scores equal
`reward_model.score`'s up to float rounding (tests/unit/test_eval_scoring.py); a model that cuts
inputs from the start (`reward_max_length`) or has no `score` head takes the plain path.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from rlaif.reward_model import encode, score


@torch.no_grad()
def score_shared_prompt(model, tokenizer, prompt: str, summaries: list[str]) -> torch.Tensor:
    """Reward of each summary for `prompt`, (k,) float32 on the CPU, reward_bias added [D19]."""
    if getattr(model.config, "reward_max_length", None) or not hasattr(model, "score"):
        return score(model, tokenizer, [prompt] * len(summaries), summaries)
    was_training = model.training
    model.eval()
    device = model.device
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    tails = [encode(tokenizer, prompt, s)[len(prompt_ids) :] for s in summaries]  # " " + summary + EOS
    base = getattr(model, model.base_model_prefix)
    cache = DynamicCache(config=model.config)
    base(input_ids=torch.tensor([prompt_ids], device=device), past_key_values=cache, use_cache=True)
    cache.batch_repeat_interleave(len(tails))

    k, width, n_prompt = len(tails), max(map(len, tails)), len(prompt_ids)
    ids = torch.full((k, width), tokenizer.pad_token_id, dtype=torch.long, device=device)  # (k, L), right-padded
    tail_mask = torch.zeros((k, width), dtype=torch.long, device=device)
    for i, t in enumerate(tails):
        ids[i, : len(t)] = torch.tensor(t, device=device)
        tail_mask[i, : len(t)] = 1
    mask = torch.cat([torch.ones((k, n_prompt), dtype=torch.long, device=device), tail_mask], dim=1)  # (k, P + L)
    positions = (n_prompt + torch.arange(width, device=device)).expand(k, -1)  # (k, L)
    hidden = base(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                  use_cache=True).last_hidden_state  # (k, L, H)
    lengths = torch.tensor([len(t) for t in tails], device=device)
    last = hidden[torch.arange(k, device=device), lengths - 1]  # (k, H): the EOS [D03]
    scores = model.score(last)[:, 0].float().cpu()
    model.train(was_training)
    return scores + getattr(model.config, "reward_bias", 0.0)
