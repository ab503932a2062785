"""Our PPO (`standard`, `lean`) against TRL 0.13's PPOTrainer, on identical settings, on this machine.

All three get the same SmolLM2-135M-Instruct policy and reference, the same reward model
(SmolLM2-135M with a fresh scalar head, also the value model's start), the same 64 real posts
(../shared/data/tldr/sff_validation_posts_250.jsonl, prompts cut to ~150 tokens), batch 8,
responses of 48 tokens at temperature 0.7, 4 PPO epochs of one minibatch, and the same number of
episodes. TRL runs in its own virtualenv (.bench/trl013: trl 0.13.0, transformers 4.48.0,
accelerate 1.2.1, the same torch 2.13.0 CPU wheel), made on first use. Each implementation runs
in its own subprocess; we report episodes/s (training loop only, model loading excluded), peak
RSS of the whole process (os.wait4's ru_maxrss), and model FLOP/s as a fraction of this machine's
measured fp32 matmul FLOP/s. The last line is machine-readable:
    RESULT trl013_eps=A standard_eps=B lean_eps=C standard_ratio=B/A lean_ratio=C/A lean_rss_ratio=R

Long (TRL alone ~10 min on 2 cores): run it once, alone, under the heavy-job lock:
    flock /tmp/rlaif-heavy.lock .venv/bin/python benchmarks/ppo_vs_trl013.py
Short profiling runs of our modes: --only standard,lean --episodes 16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / ".bench"
TRL_VENV = BENCH / "trl013"
TRL_PINS = ["torch==2.13.0", "trl==0.13.0", "transformers==4.48.0", "accelerate==1.2.1"]
POSTS = REPO.parent / "shared" / "data" / "tldr" / "sff_validation_posts_250.jsonl"
N_PROMPTS, PROMPT_TOKENS, BATCH, RESPONSE, EPOCHS, TEMPERATURE = 64, 184, 8, 48, 4, 0.7  # prompts ~150 tokens
LEAN_MICRO_BATCH = 4  # gradient accumulation inside the minibatch of 8: same math [D47], half the activations
STANDARD_MICRO_BATCH = BATCH  # measured: splitting it (4) was 13% slower on 2 cores (smaller matmuls)


# ----------------------------------------------------------------------------------------------
# Parent: inputs, subprocesses, report


def ensure_trl_venv() -> Path:
    python = TRL_VENV / "bin" / "python"
    check = "import trl, transformers, accelerate, torch; print(trl.__version__, transformers.__version__, accelerate.__version__, torch.__version__)"
    if python.exists():
        out = subprocess.run([python, "-c", check], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.split()[:3] == ["0.13.0", "4.48.0", "1.2.1"]:
            return python
    print(f"[bench] creating {TRL_VENV} with {' '.join(TRL_PINS)} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(TRL_VENV)], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *TRL_PINS], check=True)
    return python


def shared_inputs() -> dict:
    """The inputs every benchmark here shares, written once under .bench/: the policy's tokenizer,
    the reward model (SmolLM2-135M with a fresh scalar head, seed 0) and the prompts (N_PROMPTS
    real posts cut to PROMPT_TOKENS). benchmarks/methods_vs_trl.py reads the same files."""
    from rlaif.config import DatasetConfig
    from rlaif.data import build_prompt, load_posts
    from rlaif.models import embedded_folder, load_tokenizer
    from rlaif.reward.model import build_reward_model

    policy = str(embedded_folder("smollm2-135m"))
    tok_dir, rm_dir, prompts_path = BENCH / "tokenizer", BENCH / "rm-fresh-head", BENCH / "prompts.json"
    tokenizer = load_tokenizer(policy, padding_side="left")  # pad = <|endoftext|>, distinct from EOS
    if not (tok_dir / "tokenizer_config.json").exists():
        tokenizer.save_pretrained(tok_dir)
    if not (rm_dir / "config.json").exists():
        rm = build_reward_model(policy, tokenizer, seed=0)
        rm.save_pretrained(rm_dir, safe_serialization=True)
        tokenizer.save_pretrained(rm_dir)
    if not prompts_path.exists():
        posts, _ = load_posts([DatasetConfig(path=str(POSTS), limit=N_PROMPTS)])
        prompts = [{"id": p["id"], "prompt": build_prompt(tokenizer, p, PROMPT_TOKENS)} for p in posts]
        prompts_path.write_text(json.dumps(prompts))
    prompts = json.loads(prompts_path.read_text())
    lengths = [len(tokenizer(p["prompt"], add_special_tokens=False).input_ids) for p in prompts]
    return {
        "policy": policy,
        "tokenizer": str(tok_dir),
        "rm": str(rm_dir),
        "prompts": str(prompts_path),
        "mean_prompt_tokens": sum(lengths) / len(lengths),
    }


def parameter_counts(policy: str) -> tuple[int, int]:
    """(body, head) parameter counts of the policy; the head is the tied embedding matrix, used as
    the vocabulary projection."""
    from safetensors import safe_open

    with safe_open(str(Path(policy) / "model.safetensors"), "pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    n_total = sum(math.prod(s) for s in shapes.values())
    n_head = math.prod(shapes["model.embed_tokens.weight"])
    return n_total - n_head, n_head


def prepare() -> dict:
    """The shared inputs plus the model folders as transformers 4.48 (TRL 0.13's venv) reads them."""
    inputs = shared_inputs()
    trl_models = {
        name: _trl_copy(src, BENCH / "trl-models" / name)
        for name, src in (("policy", inputs["policy"]), ("rm", inputs["rm"]))
    }
    return {**inputs, "trl_policy": trl_models["policy"], "trl_rm": trl_models["rm"]}


def _trl_copy(src: str, dst: Path) -> str:
    """The model folder as transformers 4.48 reads it: transformers 5 writes `rope_parameters` and
    `dtype`, which 4.48 ignores (it would fall back to rope_theta 10000 and a different model).
    Same weights (linked), config with the 4.x keys added."""
    if not (dst / "config.json").exists():
        dst.mkdir(parents=True, exist_ok=True)
        config = json.loads((Path(src) / "config.json").read_text())
        config["rope_theta"] = config.get("rope_parameters", {}).get("rope_theta", 10000.0)
        config["torch_dtype"] = config.get("dtype", "float32")
        (dst / "config.json").write_text(json.dumps(config, indent=2))
        for f in Path(src).glob("*.safetensors"):
            (dst / f.name).symlink_to(f.resolve())
    return str(dst)


def matmul_flops() -> float:
    """This machine's fp32 matmul FLOP/s at the default thread count (best of 5, 2048^3)."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, (time.perf_counter() - t) / 4)
    return 2 * 2048**3 / best


def run_child(python: Path, impl: str, inputs: dict, episodes: int) -> dict:
    log = BENCH / f"{impl}.log"
    cmd = [
        str(python),
        str(Path(__file__).resolve()),
        "--child",
        impl,
        "--episodes",
        str(episodes),
        "--inputs",
        json.dumps(inputs),
    ]
    print(f"[bench] {impl}: running {episodes} episodes (log: {log})", flush=True)
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"[bench] {impl} failed; see {log}:\n" + log.read_text()[-3000:])
    line = next(ln for ln in reversed(log.read_text().splitlines()) if ln.startswith("BENCH "))
    result = json.loads(line[len("BENCH ") :])
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9  # Linux reports KiB
    return result


def model_flops(impl: str, episodes: int, prompt_tokens: float, n_body: float, n_head: float) -> float:
    """Matmul FLOPs of the passes each implementation runs (2 per weight per token forward; a full
    backward 4 more; a frozen-weight backward 2 more), attention scores left out. Prompt tokens are
    counted unpadded and responses at their 48-token cap. TRL computes vocabulary logits at every
    position of the reference and training passes; ours only at response positions."""
    P, R = prompt_tokens, RESPONSE
    L = P + R
    gen = P * 2 * n_body + R * 2 * (n_body + n_head)
    if impl == "trl013":
        rollout = L * 2 * (n_body + n_head) + 2 * L * 2 * n_body  # reference; value and reward
        train = EPOCHS * (L * 6 * (n_body + n_head) + L * 6 * n_body)  # policy + value, full fine-tuning
    elif impl == "standard":
        rollout = L * 2 * n_body + R * 2 * n_head + 2 * L * 2 * n_body
        train = EPOCHS * (L * 6 * n_body + R * 6 * n_head + L * 6 * n_body)
    else:  # lean: log-probs and values come with the samples; the value head shares the policy's pass;
        # the bottom `shared_layers` of the stack run once, while sampling [D48]; frozen weights: backward 2x
        from rlaif.config import RLConfig

        top = 1.0 - RLConfig().shared_layers
        rollout = L * 2 * n_body * top + R * 2 * n_head + L * 2 * n_body  # reference (adapter off, top layers); reward
        train = EPOCHS * (L * 4 * n_body * top + R * 4 * n_head)
    return episodes * (gen + rollout + train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=N_PROMPTS)
    parser.add_argument("--only", default="trl013,standard,lean", help="comma-separated subset of trl013,standard,lean")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, json.loads(args.inputs), args.episodes)
    if not POSTS.exists():
        sys.exit(f"[bench] real posts not found at {POSTS}")
    BENCH.mkdir(exist_ok=True)
    impls = args.only.split(",")
    trl_python = ensure_trl_venv() if "trl013" in impls else None
    inputs = prepare()
    peak = matmul_flops()
    n_body, n_head = parameter_counts(inputs["policy"])
    print(
        f"[bench] fp32 matmul: {peak / 1e9:.1f} GFLOP/s; prompts: {N_PROMPTS} posts, mean {inputs['mean_prompt_tokens']:.0f} tokens; "
        f"model: {n_body / 1e6:.1f}M body + {n_head / 1e6:.1f}M tied head parameters",
        flush=True,
    )
    results = {}
    for impl in impls:
        python = trl_python if impl == "trl013" else Path(sys.executable)
        results[impl] = r = run_child(python, impl, inputs, args.episodes)
        flops = model_flops(impl, r["episodes"], inputs["mean_prompt_tokens"], n_body, n_head)
        r["model_flops_per_s"] = flops / r["train_seconds"]
        print(
            f"[bench] {impl}: {r['eps']:.4f} episodes/s ({r['episodes']} in {r['train_seconds']:.0f}s), peak RSS "
            f"{r['peak_rss_gb']:.2f} GB, model FLOP/s {r['model_flops_per_s'] / 1e9:.1f} G = "
            f"{r['model_flops_per_s'] / peak:.1%} of measured fp32 matmul",
            flush=True,
        )
        if impl == "trl013":
            print(
                f"[bench] trl013 reward placement `rewards[[start, end]] += scores` under torch {r['torch']}: "
                f"{'still correct (same as rewards[start, end])' if r['reward_placement_ok'] else 'WRONG'}",
                flush=True,
            )
    print(
        "\n| implementation | episodes/s | vs TRL 0.13 | peak RSS (GB) | vs TRL 0.13 | model FLOP/s | of fp32 matmul |"
    )
    print("|---|---|---|---|---|---|---|")
    base = results.get("trl013")
    for impl, r in results.items():
        speed = f"{r['eps'] / base['eps']:.2f}x" if base else "-"
        rss = f"{r['peak_rss_gb'] / base['peak_rss_gb']:.2f}x" if base else "-"
        print(
            f"| {impl} | {r['eps']:.4f} | {speed} | {r['peak_rss_gb']:.2f} | {rss} | {r['model_flops_per_s'] / 1e9:.1f} G | "
            f"{r['model_flops_per_s'] / peak:.1%} |"
        )
    if base and {"standard", "lean"} <= results.keys():
        a, b, c = base["eps"], results["standard"]["eps"], results["lean"]["eps"]
        rss = results["lean"]["peak_rss_gb"] / base["peak_rss_gb"]
        print(
            f"\nRESULT trl013_eps={a:.4f} standard_eps={b:.4f} lean_eps={c:.4f} standard_ratio={b / a:.2f} "
            f"lean_ratio={c / a:.2f} lean_rss_ratio={rss:.2f}"
        )


# ----------------------------------------------------------------------------------------------
# Children: one implementation each, in its own process


def child(impl: str, inputs: dict, episodes: int) -> None:
    prompts = json.loads(Path(inputs["prompts"]).read_text())
    out_dir = BENCH / "out" / impl
    if impl == "trl013":
        result = run_trl(inputs, prompts, episodes, out_dir)
    else:
        result = run_ours(impl, inputs, prompts, episodes, out_dir)
    print("BENCH " + json.dumps(result), flush=True)


def run_trl(inputs: dict, prompts: list[dict], episodes: int, out_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedTokenizerFast
    from trl import PPOConfig, PPOTrainer

    # TRL 0.13 places the score with `rewards[[start, end]] += scores`; torch 2.9+ said it would
    # read a list index as one tensor index. Check what this torch does.
    rewards, start, end, scores = (
        torch.zeros(3, 5),
        torch.arange(3),
        torch.tensor([1, 4, 2]),
        torch.tensor([1.0, 2.0, 3.0]),
    )
    listed, tupled = rewards.clone(), rewards.clone()
    try:
        listed[[start, end]] += scores
        placement_ok = torch.equal(listed, tupled.index_put_((start, end), scores, accumulate=True))
    except (IndexError, RuntimeError):
        placement_ok = False
    # tokenizer_config.json written by transformers 5 names a class 4.48 lacks; tokenizer.json is the same
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(Path(inputs["tokenizer"]) / "tokenizer.json"),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
    )
    policy = AutoModelForCausalLM.from_pretrained(inputs["trl_policy"], torch_dtype=torch.float32)
    ref_policy = AutoModelForCausalLM.from_pretrained(inputs["trl_policy"], torch_dtype=torch.float32)
    reward_model = AutoModelForSequenceClassification.from_pretrained(
        inputs["trl_rm"], num_labels=1, torch_dtype=torch.float32
    )
    value_model = AutoModelForSequenceClassification.from_pretrained(
        inputs["trl_rm"], num_labels=1, torch_dtype=torch.float32
    )
    for model in (policy, ref_policy, reward_model, value_model):
        model.config.pad_token_id = tokenizer.pad_token_id
    dataset = Dataset.from_dict(
        {"input_ids": [tokenizer(p["prompt"], add_special_tokens=False).input_ids for p in prompts]}
    )
    config = PPOConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        num_mini_batches=1,
        local_rollout_forward_batch_size=BATCH,
        total_episodes=episodes,
        num_ppo_epochs=EPOCHS,
        response_length=RESPONSE,
        temperature=TEMPERATURE,
        stop_token="eos",
        missing_eos_penalty=1.0,
        kl_coef=0.05,
        learning_rate=3e-6,
        lr_scheduler_type="cosine",
        num_sample_generations=0,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        seed=0,
        use_cpu=True,
        bf16=False,
        fp16=False,
        dataloader_num_workers=0,
    )
    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref_policy,
        reward_model=reward_model,
        value_model=value_model,
        train_dataset=dataset,
        eval_dataset=dataset,
    )
    t = time.time()
    trainer.train()
    seconds = time.time() - t
    done = trainer.state.episode
    return {
        "impl": "trl013",
        "episodes": done,
        "train_seconds": seconds,
        "eps": done / seconds,
        "reward_placement_ok": placement_ok,
        "torch": torch.__version__,
    }


def run_ours(mode: str, inputs: dict, prompts: list[dict], episodes: int, out_dir: Path) -> dict:
    import torch
    from accelerate import Accelerator

    from rlaif.config import LoraSettings, PPOSettings, RLConfig
    from rlaif.models import load_tokenizer
    from rlaif.rl.build import build_rl_models
    from rlaif.rl.trainer import PPOTrainer

    accelerator = Accelerator(cpu=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.jsonl").unlink(missing_ok=True)
    ppo = PPOSettings(
        ppo_epochs=EPOCHS,
        num_minibatches=1,
        learning_rate=3e-6 if mode == "standard" else 3e-4,
        micro_batch_size=STANDARD_MICRO_BATCH if mode == "standard" else LEAN_MICRO_BATCH,
    )
    rl = RLConfig(
        mode=mode,
        lora=LoraSettings(enabled=True),
        total_episodes=episodes,
        rollout_batch_size=BATCH,
        response_length=RESPONSE,
        temperature=TEMPERATURE,
        forward_batch_size=BATCH,
        kl_coef=0.05,
        missing_eos_penalty=1.0,
        save_steps=10**9,
        sample_steps=10**9,
        heldout_posts=0,
        ppo=ppo,
    )
    tokenizer = load_tokenizer(inputs["policy"], padding_side="left")  # the same ids and pad as .bench/tokenizer
    torch.manual_seed(0)
    models = build_rl_models(rl, inputs["policy"], inputs["rm"], None, tokenizer, accelerator)
    trainer = PPOTrainer(models, tokenizer, prompts, rl, out_dir, seed=0, accelerator=accelerator)
    t = time.time()
    trainer.train()
    seconds = time.time() - t
    done = trainer.num_steps * trainer.global_batch
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    phases = {k: sum(r[k] for r in rows) for k in ("time/rollout_s", "time/update_s")}
    return {
        "impl": mode,
        "episodes": done,
        "train_seconds": seconds,
        "eps": done / seconds,
        **phases,
        "mean_response_length": sum(r["response/length"] for r in rows) / len(rows),
    }


if __name__ == "__main__":
    main()
