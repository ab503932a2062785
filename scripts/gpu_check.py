"""The steps of scripts/gpu_check.sh (issue #11): run them through that script, which sets the
environment (PYTHONPATH, RLAIF_DEVICE, RLAIF_CACHE, the bundled data and wheels) first.

    env        what this machine has: torch, CUDA, the GPU, the packages rlaif imports
    tiny-run   `rlaif run configs/tiny.yaml` in one precision, every stage checked to have run on
               the device (its peak device memory > 0), then the RL stage again in the paper's
               precision (rl.dtype float32 under bf16 mixed precision, standard mode)
    ppo-step   PPO steps of `lean` and `standard` on a randomly initialised GPT-2-Large-sized model
               (GPT2Config n_layer=36, n_embd=1280, n_head=20; --size tiny: 2 layers of 64), printing
               episodes/s and peak device memory
    bundle     (on a machine with rlaif set up) copy what a bare CUDA machine lacks into .gpu_check/:
               the tiny-random model folder, the ../shared/data files the tests read, and wheels of
               the pure-Python packages rlaif needs beyond torch/transformers/accelerate/peft

Nothing here reaches the Hugging Face Hub: models are built from configs, the tokenizer is the
tiny-random folder's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / ".gpu_check"
# imported by rlaif (or its tests) beyond torch, transformers, accelerate and peft
NEEDED = ("datasets", "yaml", "tqdm", "safetensors", "numpy", "matplotlib", "pytest")
WHEELS = ("datasets", "dill", "multiprocess")  # pure Python; the CUDA image lacks them
PYTHONS = ("3.11", "3.12", "3.13")
DATA_FILES = (
    "tldr/webis_tldr17_400.jsonl",
    "tldr/sff_validation_posts_250.jsonl",
    "tldr/openai_tldr_30.jsonl",
    "hh-rlhf/harmless-base-test.jsonl.gz",
    "README.md",
)


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def peak_memory(device) -> str:
    """Peak device memory since the last reset (CUDA), or the process's peak RSS (CPU)."""
    import resource

    import torch

    if device.type == "cuda":
        return f"peak {device} memory {gib(torch.cuda.max_memory_allocated(device))}"
    return f"peak RSS {gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)} (process)"


# --- env -----------------------------------------------------------------------------------------


def cmd_env(args) -> int:
    import importlib

    import torch

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    for name in ("transformers", "accelerate", "peft", *NEEDED):
        try:
            module = importlib.import_module(name)
            print(f"  {name} {getattr(module, '__version__', '?')}")
        except ImportError as e:
            print(f"MISSING {name}: {e}; on a machine with rlaif set up run `bash scripts/gpu_check.sh --bundle`")
            return 1
    from rlaif.models import compute_device, embedded_folder

    device = compute_device()
    print(f"rlaif device: {device}")
    if args.device == "cuda":
        if device.type != "cuda":
            print("FAIL: RLAIF_DEVICE=cuda but rlaif computes on", device)
            return 1
        props = torch.cuda.get_device_properties(device)
        print(f"  GPU {props.name}, {gib(props.total_memory)}, {torch.cuda.device_count()} device(s)")
    print(f"tiny-random: {embedded_folder('tiny-random')}")
    data = REPO.parent / "shared" / "data"
    missing = [f for f in DATA_FILES if not (data / f).exists()]
    if missing:
        print(f"FAIL: {data} lacks {missing}; bundle them with `bash scripts/gpu_check.sh --bundle`")
        return 1
    print(f"data: {data}")
    return 0


# --- tiny-run ------------------------------------------------------------------------------------


def dtype_fields(cfg) -> list[str]:
    """Dotted names of every `dtype` field of the resolved config (sft.dtype, label.labeler.dtype, ...)."""
    from rlaif.config.base import to_dict

    found = []

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "dtype" and isinstance(value, str):
                    found.append(prefix + key)
                else:
                    walk(value, f"{prefix}{key}.")

    walk(to_dict(cfg), "")
    return found


def cfg_epochs(config: str, overrides: list[str]) -> int:
    from rlaif.config import load_config

    return load_config(config, overrides).rl.ppo.ppo_epochs


def cmd_tiny_run(args) -> int:
    import torch

    import rlaif.cli as cli
    from rlaif.config import load_config
    from rlaif.models import compute_device

    device = compute_device()
    config = str(REPO / "configs" / "tiny.yaml")
    base = [f"output_dir={args.out}"]
    dtype = {"fp32": "float32", "bf16": "bfloat16"}[args.precision]
    overrides = base + [f"{name}={dtype}" for name in dtype_fields(load_config(config, base))]
    print("overrides:", " ".join(overrides[1:]), flush=True)
    shutil.rmtree(args.out, ignore_errors=True)
    os.environ["ACCELERATE_MIXED_PRECISION"] = "no"

    peaks: dict[str, float] = {}
    real_run_stage = cli.run_stage

    def measured(stage, cfg, *a, **kw):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        t0 = time.time()
        ran = real_run_stage(stage, cfg, *a, **kw)
        if device.type == "cuda":
            peaks[stage.name] = torch.cuda.max_memory_allocated(device) - before
            shown = f"peak {device} memory above the start {gib(peaks[stage.name])}"
        else:
            shown = peak_memory(device)
        print(f"[gpu_check] {stage.name}: {time.time() - t0:.1f}s, {shown}", flush=True)
        return ran

    cli.run_stage = measured
    try:
        t0 = time.time()
        if cli.main(["run", config, *[x for o in overrides for x in ("--set", o)]]) != 0:
            print("FAIL: rlaif run returned an error")
            return 1
        print(f"[gpu_check] rlaif run ({args.precision}): {time.time() - t0:.1f}s", flush=True)
        failures = []
        manifest = json.loads((Path(args.out) / "manifest.json").read_text())["stages"]
        for name, entry in manifest.items():
            if entry.get("status") != "done":
                failures.append(f"{name} is {entry.get('status')}")
        # every stage that runs a model must have put something on the device (the report runs none)
        if device.type == "cuda":
            failures += [f"{n} allocated nothing on {device}" for n, p in peaks.items() if n != "report" and p <= 0]
        rl_metrics = json.loads((Path(args.out) / "rl" / "metrics.json").read_text())
        if rl_metrics["device"].split(":")[0] != device.type:
            failures.append(f"rl ran on {rl_metrics['device']}")
        if rl_metrics["precision"] != {"dtype": dtype, "mixed_precision": "no"}:
            failures.append(f"rl precision {rl_metrics['precision']}")
        if args.precision == "fp32":
            # the paper's precision for the RL stage: float32 weights, bf16 autocast, standard mode
            os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
            t0 = time.time()
            extra = ["rl.mode=standard", "rl.heldout_posts=2"]
            if cli.main(["rl", config, *[x for o in overrides + extra for x in ("--set", o)]]) != 0:
                failures.append("rl (float32 weights, bf16 mixed precision, standard) returned an error")
            else:
                rl_metrics = json.loads((Path(args.out) / "rl" / "metrics.json").read_text())
                first = json.loads((Path(args.out) / "rl" / "metrics.jsonl").read_text().splitlines()[0])
                print(
                    f"[gpu_check] rl standard, float32 + bf16 autocast: {time.time() - t0:.1f}s, "
                    f"precision {rl_metrics['precision']}, step 1's mean ratio over its "
                    f"{cfg_epochs(config, overrides)} epochs {first['policy/ratio']:.6f}",
                    flush=True,
                )
                if rl_metrics["precision"] != {"dtype": "float32", "mixed_precision": "bf16"}:
                    failures.append(f"rl precision {rl_metrics['precision']}, expected float32 + bf16")
            os.environ["ACCELERATE_MIXED_PRECISION"] = "no"
    finally:
        cli.run_stage = real_run_stage
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


# --- ppo-step ------------------------------------------------------------------------------------

SIZES = {
    # n_layer, n_embd, n_head, rollout batch, response tokens, micro batch, prompt tokens
    "large": dict(n_layer=36, n_embd=1280, n_head=20, batch=32, response=128, micro=16, prompt_tokens=512),
    "tiny": dict(n_layer=2, n_embd=64, n_head=4, batch=4, response=16, micro=2, prompt_tokens=192),
}


def random_models(size: str, work: Path, tokenizer) -> tuple[str, str]:
    """sft/ (a randomly initialised GPT-2 of `size`) and reward/ (that model with a fresh scalar head
    and a reward bias), as the sft and reward stages would save them; built once under `work`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlaif.models import compute_device
    from rlaif.reward.model import build_reward_model

    sft_dir, rm_dir = work / f"sft-{size}", work / f"reward-{size}"
    if not (sft_dir / "config.json").exists():
        spec = SIZES[size]
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=1024,
            n_layer=spec["n_layer"],
            n_embd=spec["n_embd"],
            n_head=spec["n_head"],
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(0)
        t0 = time.time()
        with torch.device(compute_device()):  # random init on the GPU: seconds instead of minutes
            model = GPT2LMHeadModel(config)
        model.to(torch.bfloat16).save_pretrained(sft_dir, safe_serialization=True)  # half the bytes to write
        tokenizer.save_pretrained(sft_dir)
        n_params = sum(p.numel() for p in model.parameters())
        del model
        rm = build_reward_model(str(sft_dir), tokenizer, seed=1, dtype="bfloat16")
        rm.config.reward_bias = 0.5
        rm.save_pretrained(rm_dir, safe_serialization=True)
        tokenizer.save_pretrained(rm_dir)
        del rm
        print(f"[gpu_check] random GPT-2 ({size}): {n_params / 1e6:.0f}M parameters, built in {time.time() - t0:.1f}s")
    return str(sft_dir), str(rm_dir)


def cmd_ppo_step(args) -> int:
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from rlaif.config import DatasetConfig, LoraSettings, PPOSettings, RLConfig
    from rlaif.data import load_posts, prompt_records
    from rlaif.models import compute_device, embedded_folder, load_tokenizer
    from rlaif.rl.build import build_rl_models
    from rlaif.rl.trainer import PPOTrainer

    device = compute_device()
    spec = SIZES[args.size]
    work = Path(args.work)
    tokenizer = load_tokenizer(str(embedded_folder("tiny-random")), padding_side="left")
    sft_dir, rm_dir = random_models(args.size, work, tokenizer)
    posts, _ = load_posts([DatasetConfig(path=str(REPO.parent / "shared/data/tldr/sff_validation_posts_250.jsonl"))])
    prompts = prompt_records(posts, tokenizer, spec["prompt_tokens"])
    failures = []
    for run in args.runs:
        mode, dtype, mixed = run.split(":")
        AcceleratorState._reset_state(reset_partial_state=True)  # each run its own mixed precision
        accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=mixed)
        settings = RLConfig(
            mode=mode,
            dtype=dtype,
            lora=LoraSettings(enabled=True, r=16, alpha=32),
            shared_layers=0.0,  # GPT-2 adds its position embeddings inside forward: no top-only pass [D48]
            total_episodes=args.steps * spec["batch"],
            rollout_batch_size=spec["batch"],
            response_length=spec["response"],
            forward_batch_size=spec["batch"],
            save_steps=10**9,
            sample_steps=10**9,
            heldout_posts=0,
            ppo=PPOSettings(
                ppo_epochs=4,
                num_minibatches=1,
                micro_batch_size=spec["micro"],
                learning_rate=1e-5 if mode == "standard" else 3e-4,
            ),
        )
        out_dir = work / f"ppo-{args.size}-{mode}-{dtype}-{mixed}"
        shutil.rmtree(out_dir, ignore_errors=True)
        torch.manual_seed(0)
        t0 = time.time()
        models = build_rl_models(settings, sft_dir, rm_dir, None, tokenizer, accelerator)
        trainer = PPOTrainer(models, tokenizer, prompts, settings, out_dir, seed=0, accelerator=accelerator)
        load_seconds = time.time() - t0
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.time()
        trainer.train()
        train_seconds = time.time() - t0
        rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
        finite = all(all(v == v and abs(v) != float("inf") for v in r.values() if isinstance(v, float)) for r in rows)
        last = rows[-1]
        print(
            f"[gpu_check] PPO {args.size} {mode:8s} weights {dtype:8s} mixed precision {mixed:4s}: "
            f"{last['time/episodes_per_second']:.2f} episodes/s (last of {len(rows)} steps of {spec['batch']} x "
            f"{spec['response']} tokens; all steps {len(rows) * spec['batch'] / train_seconds:.2f}), "
            f"{peak_memory(device)}, models built in {load_seconds:.1f}s, step 1's mean ratio over "
            f"{settings.ppo.ppo_epochs} epochs {rows[0]['policy/ratio']:.5f}, final KL {last['objective/kl']:.4f}, "
            f"finite {finite}",
            flush=True,
        )
        if not finite:
            failures.append(f"{run}: non-finite metrics")
        del models, trainer
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


# --- bundle --------------------------------------------------------------------------------------


def cmd_bundle(args) -> int:
    from importlib.metadata import version

    from rlaif.models import embedded_folder

    BUNDLE.mkdir(exist_ok=True)
    cache = BUNDLE / "cache" / "tiny-random-llama"
    if not cache.exists():
        shutil.copytree(embedded_folder("tiny-random"), cache)
    data = REPO.parent / "shared" / "data"
    for name in DATA_FILES:
        target = BUNDLE / "shared" / "data" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(data / name, target)
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    # multiprocess ships one wheel per Python version: one folder per version, the check installs
    # its own (the lent CUDA machines run Python 3.12)
    for python in PYTHONS:
        wheels = BUNDLE / "wheels" / python
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--python-version", python, "-d", str(wheels), *pins]
        print(" ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            print("FAIL: pip download (needs the package index); copy those wheels into", wheels)
            return 1
    size = sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file())
    print(f"{BUNDLE}: {size / 2**20:.1f} MiB (model, data, wheels {', '.join(pins)})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("env")
    p.add_argument("--device", choices=["cpu", "cuda"], required=True)
    p = sub.add_parser("tiny-run")
    p.add_argument("--precision", choices=["fp32", "bf16"], required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("ppo-step")
    p.add_argument("--size", choices=sorted(SIZES), default="large")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--work", required=True)
    p.add_argument(
        "--runs",
        nargs="+",
        default=["lean:float32:bf16", "lean:bfloat16:no", "standard:float32:bf16"],
        help="MODE:RL_DTYPE:MIXED_PRECISION for each run",
    )
    sub.add_parser("bundle")
    args = parser.parse_args()
    return {"env": cmd_env, "tiny-run": cmd_tiny_run, "ppo-step": cmd_ppo_step, "bundle": cmd_bundle}[args.command](
        args
    )


if __name__ == "__main__":
    sys.exit(main())
