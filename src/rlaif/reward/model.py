"""The scalar reward model: building, encoding, loading and scoring. Used by the reward, rl and
evaluate stages, so a summary is encoded the same way when the model is trained and when it scores.

The input is prompt + " " + summary + EOS, the prompt and the summary tokenised separately (the
token boundary the policy produces when it generates after the prompt). The score is read at the
last non-pad token, the EOS [D03]. `model.config.reward_bias` is added to every score, so the
human reference summaries score 0 on average [D19]; `model.config.reward_max_length`, when set,
caps the input by dropping tokens from the start of the prompt, as in training.
"""

from __future__ import annotations

import copy
import math

import torch
from transformers import AutoModelForSequenceClassification, DynamicCache, PreTrainedTokenizerBase

from rlaif.models import DTYPES, ModelLoadError, align_with_tokenizer, kv_cache_kwargs, load_tokenizer, resolve_model


def encode(tokenizer: PreTrainedTokenizerBase, prompt: str, summary: str, max_length: int | None = None) -> list[int]:
    """Token ids of prompt + " " + summary + EOS. Over `max_length`, tokens are dropped from the
    START: for dialogues (HH-RLHF) the end, where the two responses differ, is what must be kept."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    summary_ids = tokenizer(" " + summary.strip(), add_special_tokens=False).input_ids if summary.strip() else []
    ids = prompt_ids + summary_ids + [tokenizer.eos_token_id]
    if max_length is not None and len(ids) > max_length:
        ids = ids[len(ids) - max_length :]
    return ids


def pad_batch(sequences: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids and attention_mask, (B, T). The score head looks for the last token
    that is not the pad id, so the pad id must differ from EOS (models.ensure_pad_token)."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention_mask[i, : len(s)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def init_reward_head(model, seed: int) -> None:
    """Score head ~ N(0, 1/sqrt(d + 1)), no bias (Huang et al. 2024, arXiv 2403.17031, §6;
    Ref `layer_init(nn.Linear(hidden, 1), std=1 / np.sqrt(hidden + 1))`), so the initial scores
    have unit scale whatever the hidden size. [D15]"""
    head = model.score
    d = head.weight.shape[1]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) / math.sqrt(d + 1))
        if head.bias is not None:
            head.bias.zero_()


def build_reward_model(name: str, tokenizer: PreTrainedTokenizerBase, seed: int, dtype: str = "float32"):
    """A fresh reward model from a causal LM (a folder, a Hub id or an embedded name): the LM body
    plus a new scalar head, dropout off [D12]."""
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_model(name), num_labels=1, dtype=DTYPES[dtype], trust_remote_code=False
        )
    except OSError as e:
        raise ModelLoadError(f"cannot load model {name!r} as a reward model: {e}") from None
    align_with_tokenizer(model, tokenizer)
    init_reward_head(model, seed)
    model.config.reward_bias = 0.0
    return model


def freeze_bottom_layers(model, n_layers: int) -> None:
    """No gradients for the input embeddings and the first `n_layers` transformer blocks."""
    if n_layers <= 0:
        return
    body = getattr(model, model.base_model_prefix)
    blocks = getattr(body, "layers", None) or getattr(body, "h", None)
    if blocks is None:
        raise ModelLoadError(f"cannot find the transformer blocks of {type(body).__name__} to freeze")
    if n_layers > len(blocks):
        raise ValueError(f"freeze_layers={n_layers} but the model has {len(blocks)} layers")
    model.get_input_embeddings().requires_grad_(False)
    for block in blocks[:n_layers]:
        block.requires_grad_(False)


def load_reward_model(path: str, dtype: str = "float32"):
    """(model, tokenizer) of a saved reward model (reward/model/), in eval mode."""
    tokenizer = load_tokenizer(path, padding_side="right")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_model(path), dtype=DTYPES[dtype], trust_remote_code=False
        )
    except OSError as e:
        raise ModelLoadError(f"cannot load reward model {path!r}: {e}") from None
    if model.config.num_labels != 1:
        raise ModelLoadError(f"{path} has {model.config.num_labels} labels; a reward model has 1")
    align_with_tokenizer(model, tokenizer)
    model.eval()
    return model, tokenizer


SHARED_PREFIX_MIN = 16  # tokens: a shorter common prompt is not worth a separate pass


@torch.no_grad()
def raw_scores(
    model, tokenizer, prompts: list[str], summaries: list[str], batch_size: int = 8, max_length: int | None = None
) -> torch.Tensor:
    """Head outputs without the bias, (N,) float32 on the CPU. Summaries of one prompt (a pair, the n
    samples of best-of-n, every system of an evaluation) share its encoding: the prompt's tokens run
    once and their KV cache serves each summary [D56]."""
    if len(prompts) != len(summaries):
        raise ValueError(f"{len(prompts)} prompts but {len(summaries)} summaries")
    was_training = model.training
    model.eval()
    sequences = [encode(tokenizer, p, s, max_length) for p, s in zip(prompts, summaries)]
    out = torch.empty(len(sequences), dtype=torch.float32)
    by_prompt: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_prompt.setdefault(prompt, []).append(i)
    alone = []
    for rows in by_prompt.values():
        shared = _common_prefix([sequences[i] for i in rows]) if len(rows) > 1 and _has_score_head(model) else 0
        if shared >= SHARED_PREFIX_MIN:
            _score_sharing_prefix(model, tokenizer, sequences, rows, shared, batch_size, out)
        else:
            alone.extend(rows)
    # Similar lengths share a batch, so little compute goes to padding; results go back in order.
    order = sorted(alone, key=lambda i: len(sequences[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = pad_batch([sequences[i] for i in idx], tokenizer.pad_token_id)
        logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits  # (B, 1)
        out[idx] = logits[:, 0].float().cpu()
    model.train(was_training)
    return out


def _common_prefix(sequences: list[list[int]]) -> int:
    """Length of the token prefix every sequence shares, leaving each at least one token of its own."""
    n = min(len(s) for s in sequences) - 1
    first = sequences[0]
    for j in range(n):
        if any(s[j] != first[j] for s in sequences[1:]):
            return j
    return max(n, 0)


def _has_score_head(model) -> bool:
    """A transformers *ForSequenceClassification model (not a peft wrapper): a decoder (`base_model`)
    and a linear `score` head read at the last real token, which _score_sharing_prefix reproduces."""
    return type(model).__name__.endswith("ForSequenceClassification") and isinstance(
        getattr(model, "score", None), torch.nn.Linear
    )


def _score_sharing_prefix(model, tokenizer, sequences, rows: list[int], shared: int, batch_size: int, out) -> None:
    """Scores of sequences[rows], which share their first `shared` tokens: those run once (one row,
    cached), then each chunk of rows runs its own tokens on a copy of that cache."""
    decoder, device = model.base_model, model.device
    prefix_cache = DynamicCache(config=model.config)
    prefix = torch.tensor([sequences[rows[0]][:shared]], device=device)
    decoder(input_ids=prefix, attention_mask=torch.ones_like(prefix), position_ids=torch.arange(shared, device=device)[None],
            **kv_cache_kwargs(decoder, prefix_cache))  # fmt: skip
    rows = sorted(rows, key=lambda i: len(sequences[i]))
    for start in range(0, len(rows), batch_size):
        idx = rows[start : start + batch_size]
        tails = pad_batch([sequences[i][shared:] for i in idx], tokenizer.pad_token_id)
        tail_ids, tail_mask = tails["input_ids"].to(device), tails["attention_mask"].to(device)
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(idx))
        mask = torch.cat([tail_mask.new_ones(len(idx), shared), tail_mask], dim=1)
        positions = shared + torch.arange(tail_ids.size(1), device=device).expand(len(idx), -1)
        hidden = decoder(input_ids=tail_ids, attention_mask=mask, position_ids=positions,
                         **kv_cache_kwargs(decoder, cache)).last_hidden_state  # fmt: skip
        last = tail_mask.sum(1) - 1  # right padding: the EOS of each row
        out[idx] = model.score(hidden[torch.arange(len(idx), device=device), last])[:, 0].float().cpu()


def score(model, tokenizer, prompts: list[str], summaries: list[str], batch_size: int = 8) -> torch.Tensor:
    """Reward of each summary for its prompt, (N,), with the normalisation bias added [D19]."""
    max_length = getattr(model.config, "reward_max_length", None)
    return raw_scores(model, tokenizer, prompts, summaries, batch_size, max_length) + getattr(
        model.config, "reward_bias", 0.0
    )
