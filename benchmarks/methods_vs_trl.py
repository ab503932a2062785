"""Our RLOO, GRPO and DPO against TRL 1.16's RLOOTrainer, GRPOTrainer and DPOTrainer, on identical
settings, on this machine: full fine-tuning and LoRA.

Inputs shared with benchmarks/ppo_vs_trl013.py (files under .bench/, made once): the
SmolLM2-135M-Instruct policy (our embedded folder) as policy and reference; a SmolLM2-135M reward
model with a fresh scalar head (seed 0); 64 real posts (../shared/data/tldr/sff_validation_posts_250.jsonl)
cut to 184-token prompts (~150 on average). DPO trains on 64 real human comparisons
(../shared/data/tldr/sff_comparisons_batch13.jsonl, the first 64 rows: chosen = the summary the
worker picked), prompts cut the same way.

TRL runs in its own virtualenv, .bench/trl116 (made on first use): torch 2.13.0 (CPU), trl 1.16.0,
and the same transformers/accelerate/peft/datasets releases as our venv (so both sides run the same
model code). Each (side, method, mode) runs in its own subprocess; we report throughput of the
training loop (episodes/s for RLOO/GRPO: completions; pairs/s for DPO), peak RSS of the whole
process (os.wait4's ru_maxrss) and model FLOP/s as a fraction of this machine's measured fp32
matmul FLOP/s. The last line is machine-readable:
    RESULT rloo_ratio=… grpo_ratio=… dpo_ratio=… rloo_lora_ratio=… grpo_lora_ratio=… dpo_lora_ratio=… max_rss_ratio=…
(ratio = ours / TRL throughput; max_rss_ratio = the largest ours / TRL peak RSS over the six pairs;
`na` where a side was not measured). Targets: every ratio >= 1.2 at rss ratio <= 1; our `lean`
RLOO/GRPO against TRL with LoRA >= 1.5.

What TRL 1.16 computes per optimizer step, as configured here (read from trl/trainer/*_trainer.py
at v1.16.0), and the settings both sides must share:
- Rollout (RLOO, GRPO). GEN_BATCH = PROMPTS_PER_STEP x K completions per step: the sampler repeats
  each of PROMPTS_PER_STEP prompts K times; one `generate` over all GEN_BATCH rows (left-padded
  prompts, temperature 0.7, top_p 1, top_k 0, at most RESPONSE new tokens, stops when every row has
  EOS); completions cut after the first EOS. Then no-grad forwards over prompt + completion in
  chunks of MICRO_BATCH: RLOO always recomputes the sampling policy's log-probs ("old" log-probs,
  one extra forward), GRPO skips that pass when steps_per_generation == gradient_accumulation_steps
  and num_iterations == 1 (as here) and uses per_token_logps.detach(); the reference pass (beta != 0:
  a second model loaded from the policy's folder under full fine-tuning; the policy with its adapter
  disabled under LoRA); the reward model on prompt + completion *text* (completions decoded with
  skip_special_tokens, so the EOS is dropped, re-tokenised, right-padded; score at the last non-pad
  token). Our RM scores prompt + " " + summary + EOS: a difference in what is scored, not in work.
- RLOO advantage: reward r = score - beta * sum_t(logp_old - logp_ref) (k1 KL summed over the
  completion, in the reward); baseline = mean of the other K-1 rewards of the prompt; A = r - baseline
  (normalize_advantages=False). Loss: sequence-level PPO clip on exp(sum logp - sum logp_old),
  epsilon 0.2, mean over sequences; with one update per rollout the ratio is 1.
- GRPO advantage: A = (r - mean_group(r)) / (std_group(r) + 1e-4) (scale_rewards="group"), with r
  the score alone. Loss (loss_type="grpo", Shao et al. 2024 eq. 3): per token
  -min(ratio * A, clip(ratio, 0.8, 1.2) * A) + beta * k3, k3 = exp(ref - logp) - (ref - logp) - 1,
  averaged over each completion's tokens, then over completions. TRL 1.16's defaults differ from
  that and are overridden here: beta=0.0 (no reference model, no KL: less work), loss_type="dapo"
  (token mean over the whole accumulated batch), use_bias_correction_kl=True (k3 multiplied by the
  ratio, DeepSeek-V3.2).
- Update: per_device_train_batch_size = MICRO_BATCH sequences per forward/backward,
  gradient_accumulation_steps = steps_per_generation = GEN_BATCH / MICRO_BATCH, num_iterations = 1:
  one AdamW step per rollout, every completion used once (one PPO-style epoch). The training
  forward also computes the per-token entropy (for logging).
- DPO: each micro-batch is [chosen; rejected] right-padded, one forward of 2 x DPO_MICRO_BATCH
  sequences; loss_type=["sigmoid"]: -log sigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r))), beta
  0.1, summed log-probs over completion tokens; precompute_ref_log_probs=True: reference log-probs
  of every pair once, before training, in TRL's constructor (the policy itself before any step, or
  its adapter disabled), so no reference model is kept; we time that pass and add it to the loop
  (our DPO computes them once too). Non-conversational data: TRL appends the EOS text to chosen and
  rejected; chosen/rejected are given as " " + summary, so TRL's tokens are prompt + summary + EOS,
  what our reward model's `encode` makes. max_length=None (no truncation: sequences are < 250
  tokens); padding_free is unavailable in 1.16 (it warns and pads).
- Log-probs: TRL 1.16 projects hidden states through the vocabulary head in chunks
  (`add_fused_lm_head`), but without Triton (CPU) it projects *every* position, prompt included; on
  CUDA only completion positions. Its backward recomputes each logits tile. RLOO's extra old-log-prob
  pass and the all-position head are TRL's own cost, not settings: they stay in its time.
  Ours reads each prompt once for its K samples (docs D56): the sampling loop's prompt pass, the
  reference pass (full fine-tuning) and the reward pass run the prompt's tokens on one row per
  prompt and copy its KV cache to the K rows; TRL runs all K rows in full. That is our own work
  saved, not a setting: the same samples, scores and log-probs up to float rounding.
- Common to all: fp32 weights and math (TRL's default bf16=True is turned off), gradient
  checkpointing off (TRL's default is on: ~20% slower, less memory), AdamW with eps 1e-5 (TRL:
  1e-8), cosine schedule, max_grad_norm 1.0, weight decay 0, dropout off (none in SmolLM2),
  logging every step, no checkpoints, no evaluation, seed 0, 2 CPU threads (the machine's).
- LoRA (both sides): r 16, alpha 32, dropout 0, every linear layer of decoder layers 15..29 (the top
  half, as our lean mode puts them: rl.shared_layers = 0.5), none on the head; TRL gets the same
  through peft's layers_to_transform, so its backward also stops at layer 15.
- Counting: an episode is one sampled completion (TRL's `num_generations` rows per prompt); we
  count the rows each `_generate` returns. A DPO pair is one (chosen, rejected) row trained on.
- Timing: from TrainerCallback.on_train_begin to on_train_end (model loading, tokenisation, the
  optimizer's creation excluded), plus, for DPO, the reference precompute. Ours must time the same
  span: the training loop, including its own rollout and any reference precompute.

Long (TRL alone ~20 min on 2 cores): run it once, alone, under the heavy-job lock:
    flock /tmp/rlaif-heavy.lock env PYTHONPATH=$PWD/src /work/main/.venv/bin/python benchmarks/methods_vs_trl.py
Subsets: --sides trl --methods rloo --modes lora; a quick try: --episodes 32 --pairs 16. Each
measurement is stored in .bench/methods/<side>-<method>-<mode>.json; --reuse-trl takes TRL's from
there when its settings and counts match (our side then runs against TRL figures of another time:
runs of one setting vary by ~15% on this shared machine). TRL-side figures: README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ppo_vs_trl013 import (
    BENCH,
    POSTS,
    PROMPT_TOKENS,
    RESPONSE,
    TEMPERATURE,
    matmul_flops,
    parameter_counts,
    shared_inputs,
)

TRL_VENV = BENCH / "trl116"
TRL_TORCH = "torch==2.13.0"  # installed first, alone: the CPU wheel here; a looser pin pulls GBs of CUDA
TRL_PINS = ["trl==1.16.0", "transformers==5.24.0", "accelerate==1.15.0", "peft==0.21.2", "datasets==5.2.0"]
COMPARISONS = POSTS.parent / "sff_comparisons_batch13.jsonl"
OUT = BENCH / "methods"

METHODS = ("rloo", "grpo", "dpo")
MODES = ("full", "lora")
OURS_MODE = {"full": "standard", "lora": "lean"}  # our memory mode that runs against each TRL mode

# --- RLOO / GRPO ---
K = 4  # completions per prompt (num_generations)
PROMPTS_PER_STEP = 4
GEN_BATCH = PROMPTS_PER_STEP * K  # completions per rollout = per optimizer step
MICRO_BATCH = 8  # sequences per forward/backward (TRL per_device_train_batch_size); a memory knob
EPISODES = 64  # completions per run: 4 optimizer steps of 16 (16 of the 64 posts, K each); TRL full RLOO ~4 min
KL_COEF = 0.05  # beta of RLOO (k1, in the reward) and GRPO (k3, in the loss); TRL GRPO's default 0 skips the reference
CLIP = 0.2  # epsilon of the clipped ratio
# --- DPO ---
N_PAIRS = 64  # pairs per run, one epoch
DPO_BATCH = 8  # pairs per optimizer step
DPO_MICRO_BATCH = 4  # pairs per forward/backward (2 x 4 sequences), also the reference precompute batch
DPO_BETA = 0.1
# --- optimisation (speed does not depend on these, the trained weights do) ---
LEARNING_RATE = {("rl", "full"): 3e-6, ("rl", "lora"): 3e-4, ("dpo", "full"): 1e-6, ("dpo", "lora"): 1e-4}
ADAM_EPS = 1e-5
MAX_GRAD_NORM = 1.0
# --- LoRA, both sides ---
LORA_R, LORA_ALPHA = 16, 32
SHARED_LAYERS = 0.5  # bottom fraction of decoder layers without adapters (our rl.shared_layers default)

TARGET_RATIO, TARGET_LEAN_RATIO, TARGET_RSS_RATIO = 1.2, 1.5, 1.0


def settings() -> dict:
    """Everything a measurement depends on besides the machine; a stored TRL result is reused only
    when this matches (--reuse-trl)."""
    return {
        "trl_venv": [TRL_TORCH, *TRL_PINS],
        "rl": {
            "k": K,
            "prompts_per_step": PROMPTS_PER_STEP,
            "micro_batch": MICRO_BATCH,
            "kl_coef": KL_COEF,
            "clip": CLIP,
        },
        "dpo": {"batch": DPO_BATCH, "micro_batch": DPO_MICRO_BATCH, "beta": DPO_BETA},
        "optimiser": {
            "learning_rate": {f"{a}-{b}": lr for (a, b), lr in LEARNING_RATE.items()},
            "adam_eps": ADAM_EPS,
            "max_grad_norm": MAX_GRAD_NORM,
        },
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "shared_layers": SHARED_LAYERS},
        "data": {"prompt_tokens": PROMPT_TOKENS, "response": RESPONSE, "temperature": TEMPERATURE},
    }


# ----------------------------------------------------------------------------------------------
# Parent: inputs, subprocesses, report


def ensure_trl_venv() -> Path:
    python = TRL_VENV / "bin" / "python"
    check = (
        "import trl, transformers, accelerate, peft, datasets, torch; print(trl.__version__, "
        "transformers.__version__, accelerate.__version__, peft.__version__, datasets.__version__, torch.__version__)"
    )
    want = [pin.split("==")[1] for pin in TRL_PINS]
    if python.exists():
        out = subprocess.run([python, "-c", check], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.split()[:5] == want:
            return python
    print(f"[bench] creating {TRL_VENV} with {TRL_TORCH} {' '.join(TRL_PINS)} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(TRL_VENV)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", TRL_TORCH], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *TRL_PINS], check=True)
    return python


def prepare() -> dict:
    """The shared inputs of ppo_vs_trl013.py plus the DPO pairs, written once under .bench/."""
    inputs = shared_inputs()
    pairs_path = BENCH / "dpo_pairs.json"
    from rlaif.config import DatasetConfig
    from rlaif.models import load_tokenizer
    from rlaif.reward.data import human_pairs
    from rlaif.reward.model import encode

    tokenizer = load_tokenizer(inputs["policy"])
    if not pairs_path.exists():
        pairs, _ = human_pairs(tokenizer, [DatasetConfig(path=str(COMPARISONS), limit=N_PAIRS)], None, PROMPT_TOKENS)
        rows = [
            {"id": p["id"], "prompt": p["prompt"], "chosen": p["summary_a"], "rejected": p["summary_b"]} for p in pairs
        ]
        pairs_path.write_text(json.dumps(rows))
    pairs = json.loads(pairs_path.read_text())
    prompt_tokens = [len(tokenizer(p["prompt"], add_special_tokens=False).input_ids) for p in pairs]
    sequence_tokens = [len(encode(tokenizer, p["prompt"], p[s])) for p in pairs for s in ("chosen", "rejected")]
    return {
        **inputs,
        "pairs": str(pairs_path),
        "dpo_prompt_tokens": sum(prompt_tokens) / len(prompt_tokens),  # mean per pair
        "dpo_sequence_tokens": sum(sequence_tokens) / len(pairs),  # mean per pair, both sequences
    }


def run_child(python: Path, side: str, method: str, mode: str, inputs: dict, count: int, peak: float) -> dict:
    """One measurement in its own process; `peak` (this machine's fp32 matmul FLOP/s now) is stored with it."""
    name = f"{side}-{method}-{mode}"
    log = OUT / f"{name}.log"
    cmd = [str(python), str(Path(__file__).resolve()), "--child", side, "--method", method, "--mode", mode]
    cmd += ["--count", str(count), "--inputs", json.dumps(inputs)]
    unit = "pairs" if method == "dpo" else "episodes"
    print(f"[bench] {name}: {count} {unit} (log: {log})", flush=True)
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=BENCH.parent, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    text = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"[bench] {name} failed; see {log}:\n" + text[-3000:])
    missing = [ln for ln in text.splitlines() if ln.startswith("BENCH_MISSING ")]
    if missing:
        return {"missing": missing[-1][len("BENCH_MISSING ") :]}
    line = next(ln for ln in reversed(text.splitlines()) if ln.startswith("BENCH "))
    result = json.loads(line[len("BENCH ") :])
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # Linux reports KiB
    result["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    result["matmul_flops_per_s"] = peak
    (OUT / f"{name}.json").write_text(json.dumps({"settings": settings(), "result": result}, indent=1))
    return result


def stored_trl(method: str, mode: str, count: int) -> dict | None:
    """A TRL result measured earlier with the same settings and count, or None."""
    path = OUT / f"trl-{method}-{mode}.json"
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    if stored["settings"] != settings() or stored["result"]["count"] != count:
        return None
    return stored["result"]


def model_flops(side: str, method: str, mode: str, r: dict, n_body: int, n_head: int) -> float:
    """Matmul FLOPs of the passes each side runs: 2 per weight per token forward; a full backward 4
    more; a backward through frozen weights (activation gradients only) 2 more. Attention scores,
    LoRA's own small matmuls, the reward model's scalar head and recomputation (TRL's chunked head
    backward recomputes its logits) are left out. Tokens are counted unpadded: prompts, and the
    completions' measured mean length. TRL projects every position through the vocabulary head on
    CPU (see the module docstring); ours only the completion positions.
    Ours: RLOO/GRPO run our PPO's rollout without the critic [D43][D48][D51] (log-probs from sampling, no
    extra pass; lean runs the reference and training passes on the top layers only; each prompt once for its
    K samples in sampling, reward and full fine-tuning's reference pass [D56]); our DPO runs each pair's
    prompt once for both summaries [P02], in the reference pass and in training."""
    top = 1.0 - SHARED_LAYERS if mode == "lora" else 1.0  # fraction of the body that is back-propagated
    if method == "dpo":
        # per pair, both sequences; ours runs the prompt once for both [P02]
        T = r["sequence_tokens"] if side == "trl" else r["prompt_tokens"] + r["completion_tokens"]
        C = r["completion_tokens"]  # per pair, both completions (EOS included)
        head_positions = T if side == "trl" else C
        ref = 2 * n_body * T + 2 * n_head * head_positions
        if mode == "full":
            train = 6 * n_body * T + 6 * n_head * head_positions
        else:
            train = 2 * n_body * T + 2 * n_body * top * T + 4 * n_head * head_positions
        return r["count"] * (ref + train)
    P, R = r["prompt_tokens"], r["completion_tokens"]
    L = P + R
    generate = 2 * n_body * L + 2 * n_head * R  # prefill projects only the last prompt position
    reward = 2 * n_body * L
    if side == "trl":
        forward = 2 * (n_body + n_head) * L
        passes = forward * (2 if method == "rloo" else 1)  # reference; RLOO also recomputes the old log-probs
        if mode == "full":
            train = 6 * (n_body + n_head) * L
        else:
            train = forward + 2 * n_body * top * L + 2 * n_head * L
    else:
        # each prompt runs once for its K samples [D56] in sampling, the reward pass and (full) the reference
        S = P / K + R
        generate, reward = 2 * n_body * S + 2 * n_head * R, 2 * n_body * S
        if mode == "full":
            passes = 2 * n_body * S + 2 * n_head * R  # reference
            train = 6 * n_body * L + 6 * n_head * R
        else:  # lean: the bottom layers' outputs are saved while sampling and reused
            passes = 2 * n_body * top * L + 2 * n_head * R
            train = 4 * n_body * top * L + 4 * n_head * R
    return r["count"] * (generate + reward + passes + train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=EPISODES, help="RLOO/GRPO completions per run")
    parser.add_argument("--pairs", type=int, default=N_PAIRS, help="DPO pairs per run (at most %(default)s)")
    parser.add_argument("--sides", default="trl,ours", help="comma-separated subset of trl,ours")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of rloo,grpo,dpo")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of full,lora")
    parser.add_argument(
        "--reuse-trl",
        action="store_true",
        help="use TRL results stored by an earlier run with the same settings and counts (.bench/methods/trl-*.json) "
        "instead of measuring TRL again; the ratios then compare runs made at different times",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.method, args.mode, json.loads(args.inputs), args.count)
    sides, methods, modes = args.sides.split(","), args.methods.split(","), args.modes.split(",")
    for given, allowed, what in (
        (sides, ("trl", "ours"), "--sides"),
        (methods, METHODS, "--methods"),
        (modes, MODES, "--modes"),
    ):
        if set(given) - set(allowed):
            sys.exit(f"[bench] {what}: unknown {sorted(set(given) - set(allowed))}; choose from {list(allowed)}")
    if args.episodes % GEN_BATCH or args.episodes <= 0:
        sys.exit(f"[bench] --episodes must be a positive multiple of {GEN_BATCH} (completions per optimizer step)")
    if args.pairs % DPO_BATCH or not 0 < args.pairs <= N_PAIRS:
        sys.exit(f"[bench] --pairs must be a multiple of {DPO_BATCH} in 1..{N_PAIRS}")
    for path in (POSTS, COMPARISONS):
        if not path.exists():
            sys.exit(f"[bench] real data not found at {path}")
    OUT.mkdir(parents=True, exist_ok=True)
    trl_python = ensure_trl_venv() if "trl" in sides else None  # made even with --reuse-trl: cheap once made
    inputs = prepare()
    peak = matmul_flops()
    n_body, n_head = parameter_counts(inputs["policy"])
    print(
        f"[bench] fp32 matmul: {peak / 1e9:.1f} GFLOP/s; model: {n_body / 1e6:.1f}M body + {n_head / 1e6:.1f}M tied "
        f"head parameters; prompts: mean {inputs['mean_prompt_tokens']:.0f} tokens; DPO pairs: mean "
        f"{inputs['dpo_sequence_tokens']:.0f} tokens per pair (both sequences)",
        flush=True,
    )
    results: dict[tuple[str, str, str], dict] = {}
    for method in methods:
        for mode in modes:
            for side in sides:
                count = args.pairs if method == "dpo" else args.episodes
                r = stored_trl(method, mode, count) if side == "trl" and args.reuse_trl else None
                if r is not None:
                    print(f"[bench] trl-{method}-{mode}: reusing the measurement of {r['measured_at']}", flush=True)
                else:
                    python = trl_python if side == "trl" else Path(sys.executable)
                    r = run_child(python, side, method, mode, inputs, count, peak)
                results[side, method, mode] = r
                if "missing" in r:
                    print(f"[bench] ours-{method}-{mode}: not measured: {r['missing']}", flush=True)
                    continue
                r["model_flops_per_s"] = model_flops(side, method, mode, r, n_body, n_head) / r["seconds"]
                print(
                    f"[bench] {side}-{method}-{mode}: {r['rate']:.4f} {r['unit']}/s ({r['count']} in {r['seconds']:.0f}s), "
                    f"peak RSS {r['peak_rss_gb']:.2f} GB, model FLOP/s {r['model_flops_per_s'] / 1e9:.1f} G = "
                    f"{r['model_flops_per_s'] / r['matmul_flops_per_s']:.1%} of measured fp32 matmul",
                    flush=True,
                )
                steps = r.get("step_seconds") or []
                if len(steps) > 1:
                    later = sum(steps[1:]) / (len(steps) - 1)
                    print(
                        f"[bench]   optimizer steps: first {steps[0]:.1f}s, later ones {later:.1f}s on average",
                        flush=True,
                    )
    report(results)


def report(results: dict) -> None:
    print(
        "\n| method | mode | side | throughput | unit | vs TRL | peak RSS (GB) | vs TRL | model FLOP/s | of fp32 matmul |"
        " completion tokens | phases (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    ratios, rss_ratios = {}, {}
    for (side, method, mode), r in results.items():
        if "missing" in r:
            print(f"| {method} | {mode} | {side} | not measured | | | | | | | | |")
            continue
        base = results.get(("trl", method, mode))
        paired = side == "ours" and base is not None and "missing" not in base
        speed = r["rate"] / base["rate"] if paired else None
        rss = r["peak_rss_gb"] / base["peak_rss_gb"] if paired else None
        if paired:
            key = f"{method}_ratio" if mode == "full" else f"{method}_lora_ratio"
            ratios[key], rss_ratios[key] = speed, rss
        label = side if side == "trl" else f"ours ({OURS_MODE[mode]})"
        phases = ", ".join(f"{k} {v:.0f}" for k, v in r.get("phases", {}).items())
        print(
            f"| {method} | {mode} | {label} | {r['rate']:.4f} | {r['unit']}/s | {f'{speed:.2f}x' if paired else '-'} | "
            f"{r['peak_rss_gb']:.2f} | {f'{rss:.2f}x' if paired else '-'} | {r['model_flops_per_s'] / 1e9:.1f} G | "
            f"{r['model_flops_per_s'] / r['matmul_flops_per_s']:.1%} | {r['completion_tokens']:.1f} | {phases} |"
        )
    keys = [f"{m}_ratio" for m in METHODS] + [f"{m}_lora_ratio" for m in METHODS]
    missing = [k for k in keys if k not in ratios]
    if missing:
        print(
            f"\n[bench] no ratio for {', '.join(missing)}: both sides must be measured "
            "(our side plugs in at run_ours in benchmarks/methods_vs_trl.py)"
        )
    for key in ratios:
        target = TARGET_LEAN_RATIO if key in ("rloo_lora_ratio", "grpo_lora_ratio") else TARGET_RATIO
        ok = ratios[key] >= target and rss_ratios[key] <= TARGET_RSS_RATIO
        print(
            f"[bench] {key}: {ratios[key]:.2f}x throughput (target >= {target}), {rss_ratios[key]:.2f}x peak RSS "
            f"(target <= {TARGET_RSS_RATIO}): {'met' if ok else 'NOT met'}"
        )
    fields = [f"{k}={ratios[k]:.2f}" if k in ratios else f"{k}=na" for k in keys]
    fields.append(f"max_rss_ratio={max(rss_ratios.values()):.2f}" if not missing else "max_rss_ratio=na")
    print("\nRESULT " + " ".join(fields))


# ----------------------------------------------------------------------------------------------
# Children: one (side, method, mode) each, in its own process


def child(side: str, method: str, mode: str, inputs: dict, count: int) -> None:
    out_dir = OUT / "out" / f"{side}-{method}-{mode}"
    if side == "trl":
        result = run_trl(method, mode, inputs, count, out_dir)
    else:
        try:
            result = run_ours(method, mode, inputs, count, out_dir)
        except NotImplementedError as e:
            print(f"BENCH_MISSING {e}", flush=True)
            return
    print("BENCH " + json.dumps(result), flush=True)


def trl_lora_config(policy: str):
    """Our lean adapter as a peft config: every linear layer of the top decoder layers."""
    from peft import LoraConfig

    n_layers = json.loads((Path(policy) / "config.json").read_text())["num_hidden_layers"]
    first = int(SHARED_LAYERS * n_layers)
    return LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        layers_to_transform=list(range(first, n_layers)),
        layers_pattern="layers",
        task_type="CAUSAL_LM",
    )


def check_trl_setup(trainer, mode: str) -> dict:
    """Refuse to time a TRL trainer that does not run the settings above; what it holds, for the report."""
    import torch

    model = trainer.accelerator.unwrap_model(trainer.model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if trainer.args.activation_checkpointing or getattr(base, "is_activation_checkpointing", False):
        raise SystemExit("TRL: activation (gradient) checkpointing is on; this benchmark runs without it")
    if trainer.args.bf16 or trainer.args.fp16 or any(p.dtype != torch.float32 for p in model.parameters()):
        raise SystemExit("TRL: not float32 throughout")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if (mode == "full") != (trainable == total):
        raise SystemExit(f"TRL {mode}: {trainable} of {total} parameters trainable")
    return {"trainable_parameters": trainable, "separate_reference": getattr(trainer, "ref_model", None) is not None}


def run_trl(method: str, mode: str, inputs: dict, count: int, out_dir: Path) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

    class LoopClock(TrainerCallback):
        """The training loop's span, and every log row (TRL's own metrics)."""

        def __init__(self):
            self.begin = self.end = None
            self.logs, self.step_ends = [], []

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_ends.append(time.perf_counter())

        def step_seconds(self) -> list[float]:
            """Each optimizer step's span (the first includes the loop's warm-up)."""
            marks = [self.begin, *self.step_ends]
            return [b - a for a, b in zip(marks, marks[1:])]

        def on_train_end(self, args, state, control, **kwargs):
            self.end = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    tokenizer = AutoTokenizer.from_pretrained(inputs["tokenizer"])  # pad <|endoftext|>, eos <|im_end|>
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise SystemExit(f"{inputs['tokenizer']}: the pad token must differ from EOS")
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(inputs["policy"], dtype=torch.float32)
    peft_config = trl_lora_config(inputs["policy"]) if mode == "lora" else None
    clock = LoopClock()
    lr = LEARNING_RATE["dpo" if method == "dpo" else "rl", mode]
    common = {
        "output_dir": str(out_dir),
        "learning_rate": lr,
        "lr_scheduler_type": "cosine",
        "adam_epsilon": ADAM_EPS,
        "weight_decay": 0.0,
        "max_grad_norm": MAX_GRAD_NORM,
        "activation_checkpointing": False,  # transformers 5 name of gradient_checkpointing
        "bf16": False,
        "fp16": False,
        "use_cpu": True,
        "logging_steps": 1,
        "report_to": [],
        "save_strategy": "no",
        "eval_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": 0,
    }

    if method == "dpo":
        pairs = json.loads(Path(inputs["pairs"]).read_text())[:count]
        dataset = Dataset.from_dict(
            {
                "prompt": [p["prompt"] for p in pairs],
                "chosen": [" " + p["chosen"].strip() for p in pairs],
                "rejected": [" " + p["rejected"].strip() for p in pairs],
            }
        )
        config = trl.DPOConfig(
            **common,
            per_device_train_batch_size=DPO_MICRO_BATCH,
            gradient_accumulation_steps=DPO_BATCH // DPO_MICRO_BATCH,
            num_train_epochs=1,
            beta=DPO_BETA,
            loss_type=["sigmoid"],
            label_smoothing=0.0,
            precompute_ref_log_probs=True,
            precompute_ref_batch_size=DPO_MICRO_BATCH,
            max_length=None,
            disable_dropout=True,
        )
        # The reference precompute runs inside DPOTrainer's constructor: time it, to add to the loop.
        precompute = {"seconds": 0.0, "calls": 0}
        original = trl.DPOTrainer._precompute_ref_logps

        def timed_precompute(self, *a, **kw):
            t = time.perf_counter()
            out = original(self, *a, **kw)
            precompute["seconds"] += time.perf_counter() - t
            precompute["calls"] += 1
            return out

        trl.DPOTrainer._precompute_ref_logps = timed_precompute
        trainer = trl.DPOTrainer(
            model=policy,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[clock],
        )
        trained = {"pairs": 0, "sequence_tokens": 0, "completion_tokens": 0}
        compute_loss = trainer._compute_loss

        def counted_loss(model, batch, return_outputs):
            trained["pairs"] += batch["input_ids"].shape[0] // 2
            trained["sequence_tokens"] += int(batch["attention_mask"].sum())
            trained["completion_tokens"] += int(batch["completion_mask"].sum())
            return compute_loss(model, batch, return_outputs)

        trainer._compute_loss = counted_loss
        setup = check_trl_setup(trainer, mode)
        trainer.train()
        if precompute["calls"] != 1:
            raise SystemExit(f"expected one reference precompute pass, saw {precompute['calls']}")
        loop = clock.end - clock.begin
        seconds = loop + precompute["seconds"]
        done = trained["pairs"]
        return {
            "side": "trl",
            "method": method,
            "mode": mode,
            "unit": "pairs",
            "count": done,
            "seconds": seconds,
            "rate": done / seconds,
            "phases": {"reference": precompute["seconds"], "train": loop},
            "sequence_tokens": trained["sequence_tokens"] / done,
            "completion_tokens": trained["completion_tokens"] / done,
            "prompt_tokens": (trained["sequence_tokens"] - trained["completion_tokens"]) / done / 2,
            "steps": trainer.state.global_step,
            "step_seconds": clock.step_seconds(),
            "final_loss": next((row["loss"] for row in reversed(clock.logs) if "loss" in row), None),
            **setup,
            "trl": trl.__version__,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }

    prompts = json.loads(Path(inputs["prompts"]).read_text())
    dataset = Dataset.from_dict({"prompt": [p["prompt"] for p in prompts]})
    reward_model = AutoModelForSequenceClassification.from_pretrained(inputs["rm"], num_labels=1, dtype=torch.float32)
    rm_tokenizer = AutoTokenizer.from_pretrained(inputs["rm"])  # TRL pads it on the right itself
    rl = {
        **common,
        "per_device_train_batch_size": MICRO_BATCH,
        "gradient_accumulation_steps": GEN_BATCH // MICRO_BATCH,
        "steps_per_generation": GEN_BATCH // MICRO_BATCH,
        "num_iterations": 1,
        "num_generations": K,
        "max_completion_length": RESPONSE,
        "temperature": TEMPERATURE,
        "top_p": 1.0,
        "top_k": 0,
        "beta": KL_COEF,
        "epsilon": CLIP,
        "max_steps": count // GEN_BATCH,
        "shuffle_dataset": True,
        "log_completions": False,
        "disable_dropout": True,
    }
    if method == "rloo":
        config = trl.RLOOConfig(**rl, normalize_advantages=False)
        trainer_class = trl.RLOOTrainer
    else:
        config = trl.GRPOConfig(
            **rl,
            loss_type="grpo",
            scale_rewards="group",
            use_bias_correction_kl=False,
            importance_sampling_level="token",
            mask_truncated_completions=False,
        )
        trainer_class = trl.GRPOTrainer
    trainer = trainer_class(
        model=policy,
        reward_funcs=reward_model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        reward_processing_classes=rm_tokenizer,
        peft_config=peft_config,
        callbacks=[clock],
    )
    sampled = {"episodes": 0, "prompt_tokens": 0, "completion_tokens": 0, "generate_s": 0.0, "rollout_s": 0.0}
    generate, generate_and_score = trainer._generate, trainer._generate_and_score_completions

    def counted_generate(prompts_text):
        t = time.perf_counter()
        out = generate(prompts_text)
        sampled["generate_s"] += time.perf_counter() - t
        prompt_ids, completion_ids = out[0], out[1]
        sampled["episodes"] += len(completion_ids)
        sampled["prompt_tokens"] += sum(len(ids) for ids in prompt_ids)
        sampled["completion_tokens"] += sum(len(ids) for ids in completion_ids)
        return out

    def timed_rollout(batch):
        t = time.perf_counter()
        out = generate_and_score(batch)
        sampled["rollout_s"] += time.perf_counter() - t
        return out

    trainer._generate, trainer._generate_and_score_completions = counted_generate, timed_rollout
    setup = check_trl_setup(trainer, mode)
    trainer.train()
    seconds = clock.end - clock.begin
    done = sampled["episodes"]
    if done != trainer.state.global_step * GEN_BATCH:
        raise SystemExit(f"sampled {done} completions in {trainer.state.global_step} steps of {GEN_BATCH}")
    metric = {
        key: [row[key] for row in clock.logs if key in row]
        for key in ("reward", "kl", "completions/mean_length", "completions/clipped_ratio")
    }
    return {
        "side": "trl",
        "method": method,
        "mode": mode,
        "unit": "episodes",
        "count": done,
        "seconds": seconds,
        "rate": done / seconds,
        "phases": {
            "generate": sampled["generate_s"],
            "score": sampled["rollout_s"] - sampled["generate_s"],  # old (RLOO), reference, reward passes
            "update": seconds - sampled["rollout_s"],
        },
        "prompt_tokens": sampled["prompt_tokens"] / done,
        "completion_tokens": sampled["completion_tokens"] / done,
        "steps": trainer.state.global_step,
        "step_seconds": clock.step_seconds(),
        "metrics": metric,
        **setup,
        "trl": trl.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------------------------
# >>> OUR SIDE PLUGS IN HERE <<<


def run_ours(method: str, mode: str, inputs: dict, count: int, out_dir: Path) -> dict:
    """Our `method` ("rloo", "grpo", "dpo") in our memory mode OURS_MODE[mode] ("full" -> standard,
    "lora" -> lean), on exactly the settings above: for RLOO/GRPO, K, GEN_BATCH (PROMPTS_PER_STEP
    prompts per step), RESPONSE, TEMPERATURE, KL_COEF, CLIP, one update per rollout, the prompts in
    inputs["prompts"], the policy inputs["policy"], the reward model inputs["rm"], `count` episodes;
    for DPO, inputs["pairs"][:count] (prompt, chosen, rejected; encode as prompt + " " + summary +
    EOS), DPO_BATCH pairs per optimizer step, DPO_BETA, hard labels (p = 1), reference log-probs
    computed once; LoRA as trl_lora_config(policy) says; the optimiser constants above. Time the same
    span as TRL's side: the training loop with its rollouts (RLOO/GRPO) or its reference pass
    (DPO), not model loading. Return what run_trl returns: side="ours", method, mode, unit
    ("episodes" or "pairs"), count (episodes/pairs actually trained on), seconds, rate = count /
    seconds, phases {name: seconds}, prompt_tokens and completion_tokens (mean per episode; for DPO
    per pair, both sequences), for DPO sequence_tokens, and optionally step_seconds (each optimizer
    step's span). The parent adds peak RSS and FLOP/s.
    Raise NotImplementedError (its message is reported) while the method is missing."""
    # an empty scratch folder: a reference_logprobs.jsonl or metrics.jsonl left by an earlier measurement
    # (another count, another checkout) would be refused or mixed into this one's
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    if method == "dpo":
        return _ours_dpo(mode, inputs, count, out_dir)
    return _ours_group(method, mode, inputs, count, out_dir)


def _ours_group(method: str, mode: str, inputs: dict, count: int, out_dir: Path) -> dict:
    """Our RLOO / GRPO (rlaif.rl.trainer with the `rloo` / `grpo` section's algorithm) on the settings above."""
    import torch
    from accelerate import Accelerator

    import rlaif.rl.rollout as rollout_module
    from rlaif.config import GRPOConfig, LoraSettings, PPOSettings, RLOOConfig
    from rlaif.models import load_tokenizer
    from rlaif.rl.build import build_rl_models
    from rlaif.rl.trainer import PPOTrainer

    ppo = PPOSettings(
        ppo_epochs=1,  # one update per rollout (TRL: num_iterations 1, one optimizer step per generation)
        num_minibatches=1,
        micro_batch_size=MICRO_BATCH,
        cliprange=CLIP,
        learning_rate=LEARNING_RATE["rl", mode],
        lr_scheduler_type="cosine",
        adam_eps=ADAM_EPS,
        weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM,
    )
    section = RLOOConfig if method == "rloo" else GRPOConfig
    settings = section(
        mode=OURS_MODE[mode],
        lora=LoraSettings(enabled=True, r=LORA_R, alpha=LORA_ALPHA, dropout=0.0),  # lean: top layers [D48]
        shared_layers=SHARED_LAYERS,
        group_size=K,
        total_episodes=count,
        rollout_batch_size=PROMPTS_PER_STEP,
        response_length=RESPONSE,
        temperature=TEMPERATURE,
        forward_batch_size=GEN_BATCH,  # the no-grad passes (reference, reward) over the whole rollout at once
        kl_coef=KL_COEF,
        missing_eos_penalty=0.0,  # TRL applies none
        save_steps=10**9,
        sample_steps=10**9,
        heldout_posts=0,
        ppo=ppo,
    )
    if count % (PROMPTS_PER_STEP * K):
        raise SystemExit(f"ours: {count} episodes is not a whole number of steps of {GEN_BATCH}")
    accelerator = Accelerator(cpu=True)
    tokenizer = load_tokenizer(inputs["policy"], padding_side="left")  # the same ids and pad as .bench/tokenizer
    prompts = json.loads(Path(inputs["prompts"]).read_text())
    torch.manual_seed(0)
    models = build_rl_models(settings, inputs["policy"], inputs["rm"], None, tokenizer, accelerator)
    trainable = models.trainable
    if trainable.value_head is not None or trainable.value_model is not None:
        raise SystemExit(f"ours {method}: a critic was built")
    n_trainable = sum(p.numel() for p in trainable.parameters() if p.requires_grad)
    trainer = PPOTrainer(models, tokenizer, prompts, settings, out_dir, seed=0, accelerator=accelerator)

    generate = {"seconds": 0.0}
    sample = rollout_module.sample

    def timed_sample(*args, **kwargs):  # the sampling loop alone, as TRL's _generate is timed
        t = time.perf_counter()
        out = sample(*args, **kwargs)
        generate["seconds"] += time.perf_counter() - t
        return out

    rollout_module.sample = timed_sample
    t = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t
    rollout_module.sample = sample
    done = trainer.num_steps * trainer.global_batch
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    rollout_s = sum(r["time/rollout_s"] for r in rows)
    prompt_tokens = [
        len(tokenizer(record["prompt"], add_special_tokens=False).input_ids)
        for step in range(trainer.num_steps)
        for record in trainer.prompts_for(step)
    ]
    return {
        "side": "ours",
        "method": method,
        "mode": mode,
        "unit": "episodes",
        "count": done,
        "seconds": seconds,
        "rate": done / seconds,
        "phases": {
            "generate": generate["seconds"],
            "score": rollout_s - generate["seconds"],  # reference and reward passes
            "update": seconds - rollout_s,
        },
        "prompt_tokens": sum(prompt_tokens) / len(prompt_tokens),  # K samples of each: the same mean
        "completion_tokens": sum(r["response/length"] for r in rows) / len(rows),
        "steps": trainer.num_steps,
        "step_seconds": [r["time/rollout_s"] + r["time/update_s"] for r in rows],
        "metrics": {key: [r[key] for r in rows] for key in ("objective/raw_scores", "objective/kl", "response/length")},
        "trainable_parameters": n_trainable,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _ours_dpo(mode: str, inputs: dict, count: int, out_dir: Path) -> dict:
    """Our offline DPO (rlaif.dpo.trainer.train_dpo): hard labels, reference log-probs computed once."""
    import torch
    from accelerate import Accelerator

    from rlaif.config import DPOConfig, LoraSettings
    from rlaif.dpo.sequences import encode_pairs
    from rlaif.dpo.trainer import train_dpo
    from rlaif.models import load_tokenizer

    max_response = 10**4  # TRL: max_length None, nothing cut
    settings = DPOConfig(
        # LoRA where TRL's side has it (trl_lora_config): every linear layer of the top half
        lora=LoraSettings(enabled=mode == "lora", r=LORA_R, alpha=LORA_ALPHA, dropout=0.0, frozen_layers=SHARED_LAYERS),
        beta=DPO_BETA,
        max_response_tokens=max_response,
        learning_rate=LEARNING_RATE["dpo", mode],
        warmup_ratio=0.0,
        weight_decay=0.0,
        adam_eps=ADAM_EPS,
        max_grad_norm=MAX_GRAD_NORM,
        batch_size=DPO_BATCH,
        micro_batch_size=DPO_MICRO_BATCH,
        reference_batch_size=DPO_MICRO_BATCH,
        num_epochs=1.0,
        save_steps=10**9,
    )
    rows = json.loads(Path(inputs["pairs"]).read_text())[:count]
    pairs = [{"id": r["id"], "prompt": r["prompt"], "summary_a": r["chosen"], "summary_b": r["rejected"], "p_a": 1.0}
             for r in rows]  # fmt: skip
    tokenizer = load_tokenizer(inputs["policy"])
    encoded = encode_pairs(tokenizer, pairs, max_response)
    result = train_dpo(inputs["policy"], pairs, settings, out_dir, seed=0, accelerator=Accelerator(cpu=True),
                       tokenizer=tokenizer)  # fmt: skip
    m = result.metrics
    trainable = sum(p.numel() for p in result.policy.parameters() if p.requires_grad)
    if (mode == "full") != (trainable == sum(p.numel() for p in result.policy.parameters())):
        raise SystemExit(f"ours dpo {mode}: {trainable} parameters trainable")
    done = m["pairs_trained"]
    trained = encoded[:done]  # one epoch: every pair once (the order does not change the token counts)
    completion = sum(len(p.a) + len(p.b) for p in trained) / done
    prompt = sum(len(p.prompt) for p in trained) / done
    seconds = m["reference_seconds"] + m["train_seconds"]
    return {
        "side": "ours",
        "method": "dpo",
        "mode": mode,
        "unit": "pairs",
        "count": done,
        "seconds": seconds,
        "rate": done / seconds,
        "phases": {"reference": m["reference_seconds"], "train": m["train_seconds"]},
        "sequence_tokens": 2 * prompt + completion,
        "completion_tokens": completion,
        "prompt_tokens": prompt,
        "steps": m["steps"],
        "final_loss": m["last_step"].get("loss/dpo"),
        "trainable_parameters": trainable,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    main()
