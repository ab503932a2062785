"""A quick check after PPO on posts no stage trained on: did the reward go up, at what KL?

For each held-out post, the SFT policy and the PPO policy each write a greedy summary, both scored
by the run's reward source (with EOS appended where the cap cut it, as evaluate scores them); the
PPO policy's KL to SFT is estimated on responses it samples at the training temperature (sum over
tokens of k1, averaged over posts, as objective/kl). The
evaluate stage does the full comparison with a judge; this is the stage's own sanity figure.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from rlaif.config import RLConfig
from rlaif.rl.masking import response_padding_mask, sequence_lengths, truncate_response
from rlaif.rl.policy import RLModels
from rlaif.rl.sampling import sample


@torch.no_grad()
def heldout_eval(
    models: RLModels, tokenizer, records: list[dict], rl: RLConfig, seed: int, batch_size: int = 8
) -> tuple[dict, list[dict]]:
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    rows = [{"id": r["id"], "prompt": r["prompt"]} for r in records]
    generator = torch.Generator().manual_seed(seed)
    kls = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    for start in tqdm(range(0, len(records), batch_size), desc="held-out check", unit="batch"):
        chunk = rows[start : start + batch_size]
        batch = tokenizer([r["prompt"] for r in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        queries, mask = batch.input_ids, batch.attention_mask
        ctx = queries.size(1)
        for system in ("sft", "policy"):
            if system == "sft":
                with models.reference_context():
                    s = sample(models.reference_model(), queries, mask, rl.response_length, 0.0, eos, pad)
            else:
                s = sample(models.trainable.policy, queries, mask, rl.response_length, 0.0, eos, pad)
            responses = truncate_response(s.responses, eos, pad)
            # Scored as evaluate scores text, summary + EOS as the RM was trained [D19]: a summary cut
            # by the cap gets its EOS appended rather than being read at a token the RM never scored
            # in training (there its score can be far off: measured up to +2.7 on the demo RM).
            closed = torch.cat([responses, torch.full_like(responses[:, :1], pad)], 1)
            closed[~(responses == eos).any(1), -1] = eos
            qr = torch.cat([queries, closed], 1)
            am = torch.cat([mask, torch.ones_like(closed)], 1)
            texts = [t.strip() for t in tokenizer.batch_decode(responses, skip_special_tokens=True)]
            scores = models.reward(qr, am, ctx + sequence_lengths(closed, eos), [r["prompt"] for r in chunk], texts)
            for row, text, sc, resp in zip(chunk, texts, scores.tolist(), responses):
                row[system] = {
                    "summary": text,
                    "score": sc,
                    "ended_with_eos": bool((resp == eos).any()),
                    "num_tokens": int(sequence_lengths(resp.unsqueeze(0), eos)[0]) + 1,
                }
        # KL(policy || SFT) on the policy's own samples at the training temperature [D05]
        s = sample(models.trainable.policy, queries, mask, rl.response_length, rl.temperature, eos, pad, generator)
        responses = truncate_response(s.responses, eos, pad)
        padding = response_padding_mask(responses, eos)
        qr, am = torch.cat([queries, responses], 1), torch.cat([mask, torch.ones_like(responses)], 1)
        ref = models.ref_logprobs(qr, am, ctx, responses, rl.temperature)
        kls += ((s.logprobs - ref).masked_fill(padding, 0.0).sum(1)).tolist()
    tokenizer.padding_side = side
    n = len(rows)
    summary = {
        "heldout/posts": n,
        "heldout/sft_score": sum(r["sft"]["score"] for r in rows) / n,
        "heldout/policy_score": sum(r["policy"]["score"] for r in rows) / n,
        "heldout/policy_beats_sft": sum(r["policy"]["score"] > r["sft"]["score"] for r in rows) / n,
        "heldout/sft_eos_rate": sum(r["sft"]["ended_with_eos"] for r in rows) / n,
        "heldout/policy_eos_rate": sum(r["policy"]["ended_with_eos"] for r in rows) / n,
        "heldout/kl_to_sft": sum(kls) / n,
    }
    summary["heldout/score_gain"] = summary["heldout/policy_score"] - summary["heldout/sft_score"]
    return summary, rows
