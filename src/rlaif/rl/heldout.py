"""A quick check after PPO on posts no stage trained on: did the reward go up, at what KL?

For each held-out post, the SFT policy and the PPO policy each write a greedy summary with the one
decoder evaluate uses (rlaif.evaluation.summaries: from the saved model folders, same prompt, dtype
and token cap), and the run's reward scores both texts as evaluate scores them (summary + EOS,
rlaif.reward.model.score, or the d-RLAIF rating). The PPO policy's KL to SFT is estimated on
responses it samples at the training temperature (sum over tokens of k1, averaged over posts, as
objective/kl). The evaluate stage does the full comparison with a judge; this is the stage's own
sanity figure, and evaluate reuses its summaries (heldout.jsonl, an artifact of the stage) [E09].
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from rlaif.config import LabelerSettings, RLConfig
from rlaif.evaluation.summaries import generation_settings, greedy_summaries
from rlaif.models import encode_left
from rlaif.rl.masking import response_padding_mask, truncate_response
from rlaif.rl.policy import RLModels
from rlaif.rl.sampling import sample


@torch.no_grad()
def heldout_kl(models: RLModels, tokenizer, records: list[dict], settings: RLConfig, seed: int) -> list[float]:
    """KL(policy || SFT) per post, k1 summed over the tokens of one response sampled at the training
    temperature [D05], on models.device and in the run's precision [D50]."""
    policy = models.trainable.policy
    generator = torch.Generator(device=models.device).manual_seed(seed)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    kls: list[float] = []
    batch_size = settings.forward_batch_size
    for start in tqdm(range(0, len(records), batch_size), desc="held-out KL", unit="batch"):
        batch = encode_left(tokenizer, [r["prompt"] for r in records[start : start + batch_size]], models.device)
        queries, mask = batch.input_ids, batch.attention_mask
        with models.autocast():
            samples = sample(
                policy,
                queries,
                mask,
                settings.response_length,
                settings.temperature,
                eos,
                pad,
                generator,
                merge_lora=models.full_precision,
            )
            responses = truncate_response(samples.responses, eos, pad)
            padding = response_padding_mask(responses, eos)
            query_responses = torch.cat([queries, responses], 1)
            attention_mask = torch.cat([mask, torch.ones_like(responses)], 1)
            ref = models.ref_logprobs(query_responses, attention_mask, queries.size(1), responses, settings.temperature)
        kls += (samples.logprobs - ref).masked_fill(padding, 0.0).sum(1).tolist()
    return kls


def heldout_summaries(
    records: list[dict],
    kls: list[float],
    tokenizer,
    settings: RLConfig,
    sft_dir: str,
    policy_dir: str,
    reward_model_dir: str | None,
    direct_labeler: LabelerSettings | None,
    device: torch.device,
) -> tuple[dict, list[dict]]:
    """(heldout/* metrics, one row per post with the SFT and the policy summary and their scores);
    the models are loaded from their folders onto `device`."""
    summaries = {}
    for system, model_dir in (("sft", sft_dir), ("policy", policy_dir)):
        rows = greedy_summaries(
            model_dir,
            tokenizer,
            records,
            settings.response_length,
            settings.dtype,
            settings.forward_batch_size,
            f"held-out {system}",
            device=device,
        )
        summaries[system] = {row["id"]: row for row in rows}
    prompts = [r["prompt"] for r in records]
    for by_id in summaries.values():
        texts = [by_id[r["id"]]["summary"] for r in records]
        scores = _scores(prompts, texts, settings, reward_model_dir, direct_labeler, device)
        for record, value in zip(records, scores):
            by_id[record["id"]]["score"] = value
    rows = [
        {
            "id": r["id"],
            "prompt": r["prompt"],
            "generation": generation_settings(settings.response_length, settings.dtype),
            **{system: _entry(by_id[r["id"]]) for system, by_id in summaries.items()},
        }
        for r in records
    ]
    n = len(rows)
    summary = {
        "heldout/posts": n,
        "heldout/sft_score": sum(r["sft"]["score"] for r in rows) / n,
        "heldout/policy_score": sum(r["policy"]["score"] for r in rows) / n,
        "heldout/policy_beats_sft": sum(r["policy"]["score"] > r["sft"]["score"] for r in rows) / n,
        "heldout/sft_eos_rate": sum(r["sft"]["ended_with_eos"] for r in rows) / n,
        "heldout/policy_eos_rate": sum(r["policy"]["ended_with_eos"] for r in rows) / n,
        "heldout/kl_to_sft": sum(kls) / len(kls),
    }
    summary["heldout/score_gain"] = summary["heldout/policy_score"] - summary["heldout/sft_score"]
    return summary, rows


def _entry(row: dict) -> dict:
    return {k: row[k] for k in ("summary", "score", "ended_with_eos", "num_tokens")}


def _scores(
    prompts, texts, settings: RLConfig, reward_model_dir: str | None, direct_labeler, device: torch.device
) -> list[float]:
    """The run's reward of each text, read as evaluate reads it: summary + EOS [D19], or the d-RLAIF rating."""
    if reward_model_dir is None:
        from rlaif.labelers.rating import RatingJudge

        return RatingJudge(direct_labeler).scores(prompts, texts).tolist()
    from rlaif.reward.model import load_reward_model, score

    model, rm_tokenizer = load_reward_model(reward_model_dir, settings.dtype)
    model.to(device)
    return score(model, rm_tokenizer, prompts, texts, batch_size=settings.forward_batch_size).tolist()
