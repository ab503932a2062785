"""Batched sampling of summaries: left-padded prompts, KV cache, truncation at the first EOS."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from rlaif.models import encode_left


@dataclass
class Completion:
    text: str
    """The summary, decoded without special tokens and stripped."""
    token_ids: list[int]
    """Generated ids up to and including the first EOS (no padding)."""
    ended_with_eos: bool


@torch.no_grad()
def generate(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    temperature: float = 0.0,
    batch_size: int = 8,
    num_return_sequences: int = 1,
    desc: str | None = None,
) -> list[list[Completion]]:
    """For each prompt, `num_return_sequences` completions. temperature 0 means greedy.

    Prompts are left-padded so every row's last prompt token sits at the same position and new
    tokens follow it directly [D01]; generation stops per row at EOS and the rest is cut [D02].
    """
    was_training = model.training
    model.eval()
    eos = tokenizer.eos_token_id
    results: list[list[Completion]] = []
    batches = range(0, len(prompts), batch_size)
    for start in tqdm(batches, desc=desc, disable=desc is None, unit="batch"):
        batch = encode_left(tokenizer, prompts[start : start + batch_size], model.device)
        sampling = (
            dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
            if temperature > 0
            else dict(do_sample=False)
        )
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_return_sequences,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
        new_tokens = out[:, batch.input_ids.shape[1] :].tolist()  # (B * n, T_new)
        completions = [_cut_at_eos(tokenizer, ids, eos) for ids in new_tokens]
        for i in range(0, len(completions), num_return_sequences):
            results.append(completions[i : i + num_return_sequences])
    model.train(was_training)
    return results


def _cut_at_eos(tokenizer: PreTrainedTokenizerBase, ids: list[int], eos: int) -> Completion:
    if eos in ids:
        ids = ids[: ids.index(eos) + 1]
        ended = True
    else:
        ids = [t for t in ids if t != tokenizer.pad_token_id]
        ended = False
    return Completion(tokenizer.decode(ids, skip_special_tokens=True).strip(), ids, ended)
