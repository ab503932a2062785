"""Throughput of the local labeler: the optimised path (shared-prefix + per-post KV cache, stage 2
appended to stage 1's cache) against the naive baseline (`generate` per stage, prompts re-encoded),
side by side on the same real pairs, with identical labels required.

Pairs are real text without an SFT model: for post i of OpenAI's TL;DR sample (then Webis-TLDR-17),
summary a is its human reference summary and summary b is the reference summary of post i+1, a real
human summary of another post. The judge should prefer a; `prefers_matching` reports how often it does.

Both paths decode the rationale greedily, so they must give the same probabilities (to float
rounding); the benchmark reports the largest difference. Chunks of pairs alternate between the
paths so both see the same machine load. FLOPs are counted from the shapes of every forward call
(padding included: what the machine executed), against a measured fp32 matmul rate.

    flock /tmp/rlaif-heavy.lock .venv/bin/python benchmarks/label_throughput.py --pairs 24
Last line: RESULT pairs_per_minute_optimised=X pairs_per_minute_naive=Y ratio=Z max_abs_prob_diff=W
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from rlaif.config import DatasetConfig, LabelerSettings
from rlaif.data import build_prompt, load_posts
from rlaif.labelers import make_labeler
from rlaif.labelers.prompts import judge_text_from_prompt, make_prompt

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tldr"


def real_pairs(tokenizer, n: int, max_prompt_tokens: int) -> list[dict]:
    sources = [
        DatasetConfig(path=str(DATA / "openai_tldr_30.jsonl")),
        DatasetConfig(path=str(DATA / "webis_tldr17_400.jsonl")),
    ]
    posts, _ = load_posts(sources, require_summary=True)
    posts = posts.select(range(min(n + 1, len(posts))))
    return [
        {
            "id": posts[i]["id"],
            "text": judge_text_from_prompt(build_prompt(tokenizer, posts[i], max_prompt_tokens)),
            "a": posts[i]["summary"],
            "b": posts[i + 1]["summary"],
        }
        for i in range(min(n, len(posts) - 1))
    ]


class FlopCounter:
    """Adds up the FLOPs of every forward call of a Llama-style model from its input shapes:
    2 * params per token for the weights, 4 * layers * width * context per token for attention,
    and the LM head on the positions whose logits are computed."""

    def __init__(self, model):
        cfg = model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.attn_width = cfg.num_attention_heads * head_dim
        self.layers, self.vocab, self.hidden = cfg.num_hidden_layers, cfg.vocab_size, cfg.hidden_size
        embed = model.get_input_embeddings().weight.numel()
        self.body_params = sum(p.numel() for p in model.parameters()) - embed  # tied head counted below
        self.flops = 0.0
        model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is None:
            return
        rows, new = ids.shape
        cache = kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        keep = kwargs.get("logits_to_keep") or new
        keep = keep if isinstance(keep, int) else new
        self.flops += 2 * self.body_params * rows * new
        self.flops += 4 * self.layers * self.attn_width * rows * new * (past + (new + 1) / 2)
        self.flops += 2 * self.vocab * self.hidden * rows * min(keep, new)


def matmul_flops_per_s(n: int = 2048, reps: int = 5) -> float:
    """Best fp32 matmul rate of a few tries. Measured between chunks too and the best kept, since
    other processes on a shared machine can slow any single measurement down."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-size", type=int, default=16, help="sequences per forward batch (2 per pair)")
    ap.add_argument("--max-rationale-tokens", type=int, default=48)
    ap.add_argument("--max-prompt-tokens", type=int, default=256)
    ap.add_argument("--style", choices=["cot", "base"], default="cot")
    args = ap.parse_args()

    settings = LabelerSettings(
        model=args.model, batch_size=args.batch_size, max_rationale_tokens=args.max_rationale_tokens
    )
    labeler = make_labeler(settings)
    counter = FlopCounter(labeler.lm)
    prompt = make_prompt("summarize", args.style, args.max_rationale_tokens)
    pairs = real_pairs(labeler.tokenizer, args.pairs + 1, args.max_prompt_tokens)
    warm, pairs = pairs[0], pairs[1:]
    peak = matmul_flops_per_s()

    def requests(chunk):
        return [r for p in chunk for r in prompt.pair_requests(p["text"], p["a"], p["b"])]

    t0 = time.perf_counter()
    labeler.judge(requests([warm]))  # encodes the shared prefix once: a one-time cost per labeler
    prefix_s = time.perf_counter() - t0
    labeler.judge_naive(requests([warm]))

    step = max(1, args.batch_size // 2)
    seconds, flops, results = (
        {"optimised": 0.0, "naive": 0.0},
        {"optimised": 0.0, "naive": 0.0},
        {"optimised": [], "naive": []},
    )
    chunk_ratios = []
    paths = [("optimised", labeler.judge), ("naive", labeler.judge_naive)]
    for k, start in enumerate(range(0, len(pairs), step)):
        chunk = requests(pairs[start : start + step])
        took = {}
        for name, fn in paths[:: 1 if k % 2 == 0 else -1]:  # alternate which path goes first
            f0, t0 = counter.flops, time.perf_counter()
            results[name] += fn(chunk)
            took[name] = time.perf_counter() - t0
            seconds[name] += took[name]
            flops[name] += counter.flops - f0
        chunk_ratios.append(took["naive"] / took["optimised"])
        peak = max(peak, matmul_flops_per_s())
        done = min(start + step, len(pairs))
        print(
            f"{done}/{len(pairs)} pairs: this chunk optimised {took['optimised']:.1f}s, naive {took['naive']:.1f}s "
            f"({chunk_ratios[-1]:.2f}x); load average {Path('/proc/loadavg').read_text().split()[0]}",
            flush=True,
        )

    diffs, same_rationale, same_decision = [], 0, 0
    for o, n in zip(results["optimised"], results["naive"]):
        same_rationale += o.rationale == n.rationale
        same_decision += (o.p_first is None) == (n.p_first is None)
        if o.p_first is not None and n.p_first is not None:
            diffs.append(abs(o.p_first - n.p_first))
    max_diff = max(diffs) if diffs else float("nan")
    p_first = [r.p_first for r in results["optimised"]]
    matching = [
        p_first[2 * i] is not None
        and p_first[2 * i + 1] is not None
        and (p_first[2 * i] + 1 - p_first[2 * i + 1]) / 2 > 0.5
        for i in range(len(pairs))
    ]

    n = len(pairs)
    ppm = {k: 60.0 * n / seconds[k] for k in seconds}
    print(
        f"\nmodel {args.model}, {n} pairs ({2 * n} orders), style {args.style}, rationale <= {args.max_rationale_tokens} tokens, "
        f"batch {args.batch_size} sequences, {torch.get_num_threads()} threads"
    )
    print(
        f"warm-up pair, both paths, not timed below (includes encoding the shared prefix once): optimised {prefix_s:.2f}s"
    )
    print(f"machine fp32 matmul (2048^3, best of 5 at start and after each chunk): {peak / 1e9:.1f} GFLOP/s")
    for k in ("optimised", "naive"):
        rate = flops[k] / seconds[k]
        print(
            f"{k:>9}: {seconds[k]:7.1f}s  {ppm[k]:6.2f} pairs/min  {flops[k] / 1e12:6.2f} TFLOP executed  "
            f"{rate / 1e9:6.1f} GFLOP/s = {100 * rate / peak:4.1f}% of matmul"
        )
    print(
        f"ratio optimised/naive: {ppm['optimised'] / ppm['naive']:.2f}x (median over chunks {statistics.median(chunk_ratios):.2f}x); "
        f"FLOPs naive/optimised: {flops['naive'] / flops['optimised']:.2f}x"
    )
    print(
        f"identical rationales {same_rationale}/{2 * n}, same decided/undecided {same_decision}/{2 * n}, "
        f"max |p_first diff| {max_diff:.2e} over {len(diffs)} decided orders"
    )
    print(f"judge prefers the post's own reference summary in {sum(matching)}/{n} pairs")
    print(
        f"RESULT pairs_per_minute_optimised={ppm['optimised']:.3f} pairs_per_minute_naive={ppm['naive']:.3f} "
        f"ratio={ppm['optimised'] / ppm['naive']:.3f} max_abs_prob_diff={max_diff:.3e}"
    )


if __name__ == "__main__":
    main()
