"""Cost of best-of-n sampling per post against the number of posts per sampling call (P14): n samples of
each of the first --posts evaluation posts, --per-call posts at a time (each post's n rows reading its
prompt once, D56), as stages.best_of_n.sample_posts does. Prints seconds per post; run it under the
heavy-job lock:

    flock /tmp/rlaif-heavy.lock .venv/bin/python benchmarks/best_of_n_sampling.py configs/methods.yaml \
        --model runs/demo/sft/model --per-call 1 4 8 --dtypes bfloat16 float32

--model is the policy folder (the run's sft/model; the config's sft.model stands in without one).
Scoring is not timed (the reward model's share is in the stage's own `seconds`).
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from rlaif.config import load_config
from rlaif.data import eval_records
from rlaif.models import compute_device, load_causal_lm, load_tokenizer
from rlaif.stages.best_of_n import sample_posts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--model", default=None, help="policy folder (default: the config's sft.model)")
    parser.add_argument("--posts", type=int, default=8, help="posts sampled for each setting")
    parser.add_argument("--per-call", type=int, nargs="+", default=[1, 4, 8], help="posts per sampling call")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    settings = cfg.best_of_n
    if settings is None:
        parser.error(f"{args.config} has no best_of_n section")
    model_dir = args.model or cfg.sft.model
    device = compute_device()
    tokenizer = load_tokenizer(model_dir, padding_side="left")
    prompts = [r["prompt"] for r in eval_records(cfg, tokenizer, args.posts)]
    print(f"n={settings.n}, {settings.max_new_tokens} tokens, {len(prompts)} posts, {torch.get_num_threads()} threads")
    for dtype in args.dtypes:
        policy = load_causal_lm(model_dir, tokenizer, dtype).to(device).eval()
        for per_call in args.per_call:
            call = SimpleNamespace(**{**vars(settings), "sample_batch_size": per_call * settings.n})
            start = time.perf_counter()
            for first in range(0, len(prompts), per_call):
                sample_posts(policy, tokenizer, prompts[first : first + per_call], call, first, device)
            seconds = (time.perf_counter() - start) / len(prompts)
            print(f"{dtype} {per_call} posts per call: {seconds:.2f} s a post", flush=True)
        del policy


if __name__ == "__main__":
    main()
