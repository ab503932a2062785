"""The one decoder that writes a policy's evaluation summaries: greedy, from the saved model folder,
with one token cap for every system [E01].

`evaluate` uses it for every system it decodes, and the RL stages use it for their held-out check, so
a summary written by either is the summary the other would write: the same model files, loaded the
same way, the same prompt, dtype and token cap. Each row records those settings (`generation`), and
evaluate reuses another stage's rows only when they equal its own [E09].
"""

from __future__ import annotations

import gc

import torch
from tqdm.auto import tqdm

from rlaif.generation import generate
from rlaif.models import compute_device, load_causal_lm


def generation_settings(max_new_tokens: int, dtype: str) -> dict:
    """What makes two greedy summaries of the same prompt by the same model identical."""
    return {"decoder": "greedy", "max_new_tokens": max_new_tokens, "dtype": dtype}


def greedy_summaries(
    model_dir: str,
    tokenizer,
    records: list[dict],
    max_new_tokens: int,
    dtype: str,
    batch_size: int,
    desc: str = "summaries",
    device: torch.device | str | None = None,
):
    """Yield one row per record ({id, prompt}), batch by batch, so a caller can append each as it
    comes: {id, prompt, summary, ended_with_eos, num_tokens, generation}. Records are decoded in
    order of prompt length (less left padding per batch); the rows come in that order. The model runs
    on `device` (default: rlaif.models.compute_device())."""
    model = load_causal_lm(model_dir, tokenizer, dtype=dtype).to(device or compute_device())
    settings = generation_settings(max_new_tokens, dtype)
    todo = sorted(records, key=lambda r: len(r["prompt"]))
    try:
        for start in tqdm(range(0, len(todo), batch_size), desc=desc, unit="batch"):
            chunk = todo[start : start + batch_size]
            completions = generate(
                model,
                tokenizer,
                [r["prompt"] for r in chunk],
                max_new_tokens=max_new_tokens,
                temperature=0.0,
                batch_size=batch_size,
            )
            for record, (c,) in zip(chunk, completions):
                yield {
                    "id": record["id"],
                    "prompt": record["prompt"],
                    "summary": c.text,
                    "ended_with_eos": c.ended_with_eos,
                    "num_tokens": len(c.token_ids),
                    "generation": settings,
                }
    finally:
        del model
        gc.collect()
