"""Cost of the evaluate stage at demo scale: greedy summaries of the held-out posts by one policy,
and the judge on a number of pairs in both orders. Prints seconds; run it under the heavy-job lock:

    flock /tmp/rlaif-heavy.lock .venv/bin/python benchmarks/bench_evaluate.py configs/demo.yaml --pairs 16 --orders post-major comparison-major

The policy is the config's sft.model (the untrained base stands in for any policy of that size);
the judge is evaluate.judge with evaluate.judge_style. Scale the figures by the number of policies
(sft, rl, rl_rlhf) and of comparisons x posts to get the stage's time.
"""

from __future__ import annotations

import argparse
import time

import torch

from rlaif.config import load_config
from rlaif.data import build_prompt, load_posts
from rlaif.generation import generate
from rlaif.labelers.base import make_labeler
from rlaif.labelers.eval_judge import eval_prompt, judge_pairs
from rlaif.models import load_causal_lm, load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--pairs", type=int, default=32, help="posts whose pairs are judged (each pair in both orders)")
    parser.add_argument("--comparisons", type=int, default=3, choices=(1, 2, 3), help="comparisons per post")
    parser.add_argument(
        "--orders",
        nargs="*",
        default=["post-major"],
        choices=("post-major", "comparison-major"),
        help="request order(s) to time: post-major is what the stage does",
    )
    parser.add_argument("--posts", type=int, default=None, help="posts to summarise (default: all of data.eval)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    ev = cfg.evaluate
    print(
        f"torch threads {torch.get_num_threads()}; policy {cfg.sft.model}; judge {ev.judge.backend}/{ev.judge.model} "
        f"style {ev.judge_style}; max_new_tokens {ev.max_new_tokens}; batch {ev.batch_size}",
        flush=True,
    )

    tokenizer = load_tokenizer(cfg.sft.model, padding_side="left")
    posts, _ = load_posts(cfg.data.eval)
    if args.posts:
        posts = posts.select(range(min(args.posts, len(posts))))
    prompts = [build_prompt(tokenizer, r, cfg.data.max_prompt_tokens) for r in posts]
    model = load_causal_lm(cfg.sft.model, tokenizer, ev.dtype)
    t0 = time.time()
    out = generate(model, tokenizer, prompts, max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
    gen_s = time.time() - t0
    mean_tokens = sum(len(c[0].token_ids) for c in out) / len(out)
    print(
        f"generate: {len(prompts)} posts in {gen_s:.1f} s ({gen_s / len(prompts):.2f} s/post, mean {mean_tokens:.1f} new tokens)",
        flush=True,
    )
    del model

    # Three systems on the first --pairs posts: the generated summary, the reference, and a second
    # "policy" (the generated summary's first half), judged in up to three comparisons per post.
    ids = list(posts["id"])[: args.pairs]
    by_id = dict(zip(posts["id"], prompts))
    gen = {i: c[0].text for i, c in zip(posts["id"], out)}
    text = {
        "sft": gen,
        "reference": {r["id"]: r["summary"] or "(no reference)" for r in posts},
        "rl": {i: " ".join(t.split()[: max(1, len(t.split()) // 2)]) for i, t in gen.items()},
    }
    comparisons = ["sft:reference", "rl:reference", "rl:sft"][: args.comparisons]
    labeler = make_labeler(ev.judge)
    prompt = eval_prompt(ev)
    orders = {
        "post-major": [(c, i) for i in ids for c in comparisons],
        "comparison-major": [(c, i) for c in comparisons for i in ids],
    }
    for name in args.orders:
        pending = orders[name]
        t0 = time.time()
        rows = [
            r
            for start in range(0, len(pending), 4 * len(comparisons))
            for r in judge_pairs(labeler, prompt, pending[start : start + 4 * len(comparisons)], text, by_id)
        ]
        judge_s = time.time() - t0
        decided = sum(o["p_first"] is not None for r in rows for o in r["orders"])
        print(
            f"judge ({name}): {len(ids)} posts x {len(comparisons)} comparisons x 2 orders in {judge_s:.1f} s "
            f"({judge_s / len(pending):.2f} s/pair); {decided}/{2 * len(pending)} orders decided",
            flush=True,
        )


if __name__ == "__main__":
    main()
