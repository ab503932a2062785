"""The KL-reward frontier (Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization", arXiv
2210.10760): how far each method moved from the SFT policy, in nats of KL on held-out posts, against
what it gained, scored by its own arm's reward model and by the other arm's. A proxy reward that
keeps rising while the held-out one turns down is over-optimisation.

For a policy: one sample per post at `temperature` (1.0: the KL between the models themselves), and
KL(pi || pi_sft) estimated on it as sum_t (log pi - log pi_sft) over the response tokens up to and
including the EOS (k1 on the policy's own samples: an unbiased estimate of the sequence KL) [F01].
For best-of-n the KL is the bound log n - (n - 1)/n of Beirami et al. 2024 (arXiv 2401.01879,
rlaif.best_of_n.selection.kl_bound), which holds for the pick among n samples from the SFT policy [F02].
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from tqdm.auto import tqdm

from rlaif.best_of_n.selection import kl_bound, pick
from rlaif.evaluation import stats
from rlaif.models import encode_left, position_ids
from rlaif.rl.losses import logprobs_from_logits
from rlaif.rl.masking import response_padding_mask, truncate_response
from rlaif.rl.sampling import sample


@torch.no_grad()
def sample_with_kl(
    policy,
    tokenizer,
    records: list[dict],
    max_new_tokens: int,
    temperature: float,
    batch_size: int,
    generator: torch.Generator,
    reference=None,
) -> list[dict]:
    """One sample per record ({id, prompt}) from `policy`, with its KL to the reference [F01]:
    {id, summary, kl, num_tokens, ended_with_eos}. `reference`: a separate causal LM; None means the
    policy itself with its peft adapter switched off (a LoRA snapshot on the SFT base)."""
    device = next(policy.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    rows = []
    for start in tqdm(range(0, len(records), batch_size), desc="frontier samples", unit="batch", leave=False):
        chunk = records[start : start + batch_size]
        batch = encode_left(tokenizer, [r["prompt"] for r in chunk], device)
        queries, query_mask = batch.input_ids, batch.attention_mask  # (B, Lq)
        samples = sample(policy, queries, query_mask, max_new_tokens, temperature, eos, pad, generator)
        responses = truncate_response(samples.responses, eos, pad)  # (B, T)
        padding = response_padding_mask(responses, eos)
        ref = _reference_logprobs(policy if reference is None else reference, queries, query_mask, responses, temperature,
                                  adapter_off=reference is None)  # fmt: skip
        kl = (samples.logprobs - ref).masked_fill(padding, 0.0).sum(1)  # (B,)
        texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        for record, text, value, resp, pad_row in zip(chunk, texts, kl.tolist(), responses, padding):
            rows.append({
                "id": record["id"], "summary": text.strip(), "kl": value,
                "num_tokens": int((~pad_row).sum()), "ended_with_eos": bool((resp == eos).any()),
            })  # fmt: skip
    return rows


def _reference_logprobs(model, queries, query_mask, responses, temperature: float, adapter_off: bool) -> torch.Tensor:
    """Log-probs of `responses` (B, T) under the reference, at the same temperature as the samples."""
    query_responses = torch.cat([queries, responses], 1)  # (B, L)
    attention_mask = torch.cat([query_mask, torch.ones_like(responses)], 1)
    off = model.disable_adapter() if adapter_off and hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with off:
        logits = model(
            input_ids=query_responses, attention_mask=attention_mask, position_ids=position_ids(attention_mask)
        ).logits[:, queries.size(1) - 1 : -1]  # (B, T, V): position t predicts response token t
    return logprobs_from_logits(logits.float() / temperature, responses)


def point_summary(kl: list[float], scores: dict[str, list[float]], n_boot: int, seed: int) -> dict:
    """Mean KL and mean score under each reward model, each with a 95% bootstrap interval over posts."""
    out = {"posts": len(kl), "kl": _with_ci(kl, n_boot, seed)}
    out["scores"] = {rm: _with_ci(values, n_boot, seed) for rm, values in scores.items()}
    return out


def _with_ci(values: list[float], n_boot: int, seed: int) -> dict:
    lo, hi = stats.bootstrap_ci(np.asarray(values, dtype=float), n_boot=n_boot, seed=seed)
    return {"mean": float(np.mean(values)), "ci_low": lo, "ci_high": hi}


def best_of_n_points(candidates: dict[str, list[dict]], own: str, ns: list[int], n_boot: int, seed: int) -> list[dict]:
    """The best-of-n curve: for each n, every post's pick is its best of the first n samples by the
    `own` reward model (best_of_n.selection.pick); the picks' mean scores under every reward model
    in the candidates' `scores`, and the KL bound [F02]. `candidates`: post id -> samples in
    sampling order, each with `scores` {rm: value}."""
    points = []
    for n in ns:
        picks = [samples[pick([c["scores"][own] for c in samples], n)] for samples in candidates.values()]
        rms = picks[0]["scores"].keys()
        summary = point_summary([0.0] * len(picks), {rm: [p["scores"][rm] for p in picks] for rm in rms}, n_boot, seed)
        summary["kl"] = {"mean": kl_bound(n), "ci_low": None, "ci_high": None, "bound": True}
        points.append({"n": n, **summary})
    return points
