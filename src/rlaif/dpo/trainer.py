"""Offline DPO: the optimizer step shared with OAIF, the loop over a fixed set of pairs with cached
reference log-probs, checkpoints and resume, and `train_dpo`, the entry point without the pipeline.

Runs under `accelerate launch` as data parallel: each process takes its share of every global batch
of pairs, DDP averages the gradients, and only rank 0 writes. Writes into `out_dir`:
    reference_logprobs.jsonl   log pi_ref of both summaries of every pair, computed once [P04]
    metrics.jsonl              one line per optimizer step (keys in docs/implementation_details.md)
    checkpoints/               rlaif.rl.checkpoint (trainable weights, optimizer, scheduler, RNG)
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from rlaif.artifacts import barrier, is_main_process
from rlaif.config import ConfigError, PreferenceOptimSettings
from rlaif.dpo.losses import preference_stats, soft_dpo_loss
from rlaif.dpo.sequences import EncodedPair, PairScorer, encode_pairs, pack, pair_logprobs
from rlaif.jsonl import read_complete, read_jsonl, write_jsonl
from rlaif.models import save_snapshot_at, snapshot_steps
from rlaif.rl import NonFiniteLossError
from rlaif.rl.checkpoint import checkpoint_dirs, load_checkpoint, save_checkpoint
from rlaif.rl.trainer import _fused_adam_supported

STAT_KEYS = (
    "loss/dpo",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)


def warmup_then_constant(warmup_steps: int):
    """lr factor min(1, (s + 1) / (warmup + 1)) at optimizer step s, as the DPO reference code's
    LambdaLR: the first step already moves (transformers' constant_with_warmup starts at 0). [P06]"""
    return lambda s: min(1.0, (s + 1) / (warmup_steps + 1))


def step_indices(n: int, step: int, global_batch: int, rank: int, per_rank: int, seed: int) -> list[int]:
    """Indices (into n items) of this process's share of the global batch of `step`: a fixed
    function of (seed, step), so a resumed run needs no data-loader state. Items are visited in a
    fresh seeded permutation each pass. [P07]"""
    out, perms = [], {}
    for i in range(per_rank):
        g = step * global_batch + rank * per_rank + i
        epoch = g // n
        if epoch not in perms:
            perms[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        out.append(int(perms[epoch][g % n]))
    return out


@dataclass
class MicroBatch:
    pairs: list[EncodedPair]
    p_a: torch.Tensor
    """(b,) P(a > b) targets on the device."""
    ref_logps: torch.Tensor
    """(b, 2) reference log-probs of a and b."""
    weight: torch.Tensor
    """(b,) 1 for pairs in the loss, 0 for pairs left out (an undecided online label)."""


class DPOStep:
    """The policy (wrapped for DDP), AdamW (fused where torch has it) and the warmup schedule, and
    `step`: one optimizer step of the soft DPO loss over micro-batches of pairs."""

    def __init__(self, policy: nn.Module, settings: PreferenceOptimSettings, num_steps: int, accelerator, pad_id: int):
        self.settings, self.acc, self.pad_id = settings, accelerator, pad_id
        params = [p for p in policy.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the policy has no trainable parameter")
        optimizer = torch.optim.AdamW(
            params,
            lr=settings.learning_rate,
            eps=settings.adam_eps,
            weight_decay=settings.weight_decay,
            fused=_fused_adam_supported(params),
        )
        warmup = round(settings.warmup_ratio * num_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_constant(warmup))
        self.model, self.optimizer = accelerator.prepare(PairScorer(policy), optimizer)  # DDP when launched

    @property
    def scorer(self) -> PairScorer:
        return self.acc.unwrap_model(self.model)

    @property
    def policy(self) -> nn.Module:
        return self.scorer.policy

    def step(self, micro_batches: list[MicroBatch], step: int) -> dict[str, float]:
        """One optimizer step. Every micro-batch's summed loss is divided by the weight of the whole
        global batch (all processes), so the result is the mean over the pairs in the loss whatever
        the micro-batching [P05]. A step whose every pair is left out changes no weight."""
        acc, settings = self.acc, self.settings
        device = acc.device
        local = torch.stack([mb.weight.sum() for mb in micro_batches]).sum().reshape(1)
        total = (acc.reduce(local, reduction="sum") if acc.num_processes > 1 else local).item()
        sums = torch.zeros(len(STAT_KEYS) + 3, device=device, dtype=torch.float64)
        self.model.train()
        for k, mb in enumerate(micro_batches):
            batch = pack(mb.pairs, self.pad_id, device)
            last = k == len(micro_batches) - 1
            # DDP averages gradients across processes only on the last micro-batch
            with contextlib.nullcontext() if last else acc.no_sync(self.model):
                logps = self.model(*batch.tensors())  # (b, 2)
                logps_a, logps_b = logps[:, 0], logps[:, 1]
                ref_a, ref_b = mb.ref_logps[:, 0], mb.ref_logps[:, 1]
                losses = soft_dpo_loss(logps_a - ref_a, logps_b - ref_b, mb.p_a, settings.beta)  # (b,)
                loss = (losses * mb.weight).sum() * (acc.num_processes / max(total, 1.0))
                _check_finite(loss, acc, step)
                acc.backward(loss)
            with torch.no_grad():
                stats = preference_stats(logps_a, logps_b, ref_a, ref_b, mb.p_a, settings.beta)
                w, decided = mb.weight, stats["decided"] * mb.weight
                parts = [(losses * w).sum()] + [(stats[key] * w).sum() for key in STAT_KEYS[1:]]
                parts += [(stats["rewards/accuracies"] * decided).sum(), decided.sum(), w.sum()]
                sums += torch.stack(parts).double()
        if total > 0:
            if settings.max_grad_norm is not None:
                acc.clip_grad_norm_(self.model.parameters(), settings.max_grad_norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # a step with no pair in the loss still advances the schedule (it is a function of the step)
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()
        if acc.num_processes > 1:
            sums = acc.reduce(sums, reduction="sum")
        sums = sums.tolist()
        n, decided_n = sums[-1], sums[-2]
        row = {key: (sums[i] / n if n else None) for i, key in enumerate(STAT_KEYS)}
        row["rewards/accuracies"] = sums[-3] / decided_n if decided_n else None
        row["pairs_in_loss"] = int(n)
        row["lr"] = self.scheduler.get_last_lr()[0]
        return row

    @torch.no_grad()
    def reference_logprobs(
        self, pairs: list[EncodedPair], reference: nn.Module | None, batch_size: int
    ) -> torch.Tensor:
        """(b, 2) log pi_ref of each pair's a and b: the policy with its adapter off (LoRA), or the
        frozen `reference` model (full fine-tuning); float32 on the device. [P04]"""
        out = []
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            batch = pack(chunk, self.pad_id, self.acc.device)
            model, context = reference_of(self.policy, reference)
            with context:
                out.append(pair_logprobs(model, batch))  # (b, 2)
        return torch.cat(out) if out else torch.zeros(0, 2, device=self.acc.device)


def reference_of(policy: nn.Module, reference: nn.Module | None):
    """(model, context) that compute the reference policy: a separate frozen model, or the LoRA
    policy inside peft's disable_adapter() (the base weights are the SFT model's). [P04]"""
    if reference is not None:
        return reference, contextlib.nullcontext()
    if not hasattr(policy, "disable_adapter"):
        raise ValueError("full fine-tuning needs a frozen reference model; only a LoRA policy is its own reference")
    return policy, policy.disable_adapter()


def _check_finite(loss: torch.Tensor, acc, step: int) -> None:
    """Stop every process together on a NaN/inf loss (one process raising alone would leave the
    others waiting in the gradient all-reduce)."""
    bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=loss.device)
    if acc.num_processes > 1:
        bad = acc.reduce(bad, reduction="sum")
    if bad.item() > 0:
        raise NonFiniteLossError(
            f"non-finite DPO loss at step {step + 1} (on some process); nothing from this step was saved. "
            "Lower the learning rate or beta, or set max_grad_norm, and rerun"
        )


def drop_rows_after(path: Path, step: int) -> None:
    """Rank 0, on resume: a log's lines written after the checkpoint it resumes from are redone."""
    if is_main_process() and path.exists():
        write_jsonl(path, [r for r in read_complete(path) if r["step"] <= step])


def append_row(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------------------------
# Offline DPO over a fixed set of pairs


class OfflineDPOTrainer:
    """Pairs {id, prompt, summary_a, summary_b, p_a} (p_a default 1: a is the chosen summary; id default
    the index) -> optimizer steps of `settings.batch_size`
    pairs. `reference` is the frozen SFT model for full fine-tuning, None for LoRA (adapter off);
    it is only needed while the reference log-probs are computed, once."""

    def __init__(self, policy, tokenizer, pairs: list[dict], settings, out_dir: Path, seed: int, accelerator):
        if not pairs:
            raise ValueError("DPO needs at least one pair")
        self.settings, self.out_dir, self.seed, self.acc = settings, Path(out_dir), seed, accelerator
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        if settings.batch_size % (settings.micro_batch_size * self.world):
            raise ConfigError(
                f"batch_size {settings.batch_size} is not a multiple of micro_batch_size x processes "
                f"({settings.micro_batch_size} x {self.world})"
            )
        self.ids = [str(p.get("id", i)) for i, p in enumerate(pairs)]
        self.encoded = encode_pairs(tokenizer, pairs, settings.max_response_tokens)
        self.p_a = torch.tensor([float(p.get("p_a", 1.0)) for p in pairs], dtype=torch.float32)
        self.per_rank = settings.batch_size // self.world
        self.num_steps = settings.max_steps or int(settings.num_epochs * len(pairs)) // settings.batch_size
        if self.num_steps <= 0:
            raise ConfigError(
                f"{len(pairs)} pairs x {settings.num_epochs} epochs make no step of batch_size {settings.batch_size}; "
                "lower batch_size or raise num_epochs"
            )
        self.update = DPOStep(policy, settings, self.num_steps, accelerator, tokenizer.pad_token_id)
        self.ref_logps: torch.Tensor | None = None
        self.snapshot_steps = snapshot_steps(self.num_steps, settings.snapshots)
        self.step = 0
        self.ckpt_root = self.out_dir / "checkpoints"

    # --- reference log-probs, once [P04] ---
    def load_reference(self, reference: nn.Module | None) -> float:
        """Read reference_logprobs.jsonl, or compute it (each process a strided share, gathered) and
        write it; seconds spent. Call before resume(): a full fine-tuning policy is still the SFT model."""
        t0, path = time.time(), self.out_dir / "reference_logprobs.jsonl"
        if not path.exists():
            mine = list(range(self.rank, len(self.encoded), self.world))
            by_length = sorted(range(len(mine)), key=lambda k: len(self.encoded[mine[k]].prompt))  # less padding
            sorted_logps = self.update.reference_logprobs(
                [self.encoded[mine[k]] for k in by_length], reference, self.settings.reference_batch_size
            )
            logps = torch.empty_like(sorted_logps)
            logps[torch.tensor(by_length, dtype=torch.long, device=logps.device)] = sorted_logps
            per_rank = -(-len(self.encoded) // self.world)
            padded = torch.cat([logps, logps.new_zeros(per_rank - logps.size(0), 2)])  # (per_rank, 2)
            gathered = self.acc.gather(padded).view(self.world, per_rank, 2) if self.world > 1 else padded[None]
            if is_main_process():
                table = (
                    gathered.transpose(0, 1).reshape(-1, 2).tolist()
                )  # pair i sits at rank i % world, row i // world
                rows = [
                    {"index": i, "id": self.ids[i], "a": table[i][0], "b": table[i][1]} for i in range(len(self.ids))
                ]
                write_jsonl(path, rows)
            barrier()
        rows = read_jsonl(path)
        if [r["id"] for r in rows] != self.ids:
            raise RuntimeError(f"{path} was computed for other pairs; delete it to recompute")
        # the same numbers whether just computed or read back: every run trains on the file's values
        self.ref_logps = torch.tensor([[r["a"], r["b"]] for r in rows], dtype=torch.float32)
        return time.time() - t0

    # --- loop ---
    def resume(self) -> int | None:
        dirs = checkpoint_dirs(self.ckpt_root)
        if not dirs:
            return None
        self.step = load_checkpoint(
            dirs[-1], self.update.scorer, self.update.optimizer, self.update.scheduler, {}, self.rank, self.world
        )
        drop_rows_after(self.out_dir / "metrics.jsonl", self.step)
        return self.step

    def micro_batches(self, step: int) -> list[MicroBatch]:
        idx = step_indices(len(self.encoded), step, self.settings.batch_size, self.rank, self.per_rank, self.seed)
        # similar prompt lengths share a micro-batch (less padding); the loss does not depend on the grouping [P05]
        idx = sorted(idx, key=lambda i: len(self.encoded[i].prompt))
        device, size = self.acc.device, self.settings.micro_batch_size
        return [
            MicroBatch(
                [self.encoded[i] for i in chunk],
                self.p_a[chunk].to(device),
                self.ref_logps[chunk].to(device),
                torch.ones(len(chunk), device=device),
            )
            for chunk in (idx[s : s + size] for s in range(0, len(idx), size))
        ]

    def train(self, max_steps: int | None = None) -> dict:
        """Optimizer steps until the end (or `max_steps` more); returns the last step's metrics."""
        if self.ref_logps is None:
            raise RuntimeError("load_reference() first")
        end = self.num_steps if max_steps is None else min(self.num_steps, self.step + max_steps)
        bar = tqdm(total=self.num_steps, initial=self.step, desc="dpo", unit="step", disable=not is_main_process())
        last: dict = {}
        while self.step < end:
            t0 = time.time()
            row = self.update.step(self.micro_batches(self.step), self.step)
            self.step += 1
            seconds = time.time() - t0
            last = {"step": self.step, "pairs": self.step * self.settings.batch_size, **row,
                    "time/step_s": seconds, "time/pairs_per_second": self.settings.batch_size / seconds}  # fmt: skip
            if is_main_process():
                append_row(self.out_dir / "metrics.jsonl", last)
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss/dpo']:.4f}")
            save_snapshot_at(self.update.policy, self.out_dir / "trajectory", self.step, self.snapshot_steps)
            if self.step % self.settings.save_steps == 0 and self.step < self.num_steps:
                save_checkpoint(
                    self.ckpt_root, self.step, self.update.scorer, self.update.optimizer, self.update.scheduler, {},
                    self.rank, self.world, self.settings.save_total_limit,
                )  # fmt: skip
        bar.close()
        return last


@dataclass
class DPOResult:
    policy: nn.Module
    """The trained policy (peft-wrapped when LoRA; rlaif.models.save_model merges it)."""
    metrics: dict


def train_dpo(
    model_dir: str,
    pairs: list[dict],
    settings,
    out_dir: Path,
    seed: int = 0,
    resume: bool = False,
    accelerator=None,
    tokenizer=None,
) -> DPOResult:
    """DPO of the causal LM in `model_dir` on `pairs` ({prompt, summary_a, summary_b}; optional p_a, default 1
    = a chosen, and id) with `settings` (rlaif.config.DPOConfig), also outside the pipeline (benchmarks):
    loads the model (LoRA or full per settings.lora), computes the reference log-probs, trains
    max_steps (else num_epochs x pairs / batch_size) steps, writes its logs into `out_dir`; saves no
    model (the result holds it). `resume`: continue from the newest checkpoint in out_dir/checkpoints."""
    from accelerate import Accelerator

    from rlaif.models import load_causal_lm, load_tokenizer
    from rlaif.training import apply_lora

    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())  # cpu=True: gloo on CPU
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or load_tokenizer(model_dir)
    torch.manual_seed(seed)  # LoRA initialisation: the same on every process
    policy = load_causal_lm(model_dir, tokenizer, settings.dtype)
    policy.config.use_cache = False
    reference = None
    if settings.lora.enabled:
        policy.requires_grad_(False)
        policy = apply_lora(policy, settings.lora, task_type="CAUSAL_LM")
    else:
        # the reference log-probs are computed before the first step, from the policy itself: no second copy
        reference = policy
    trainer = OfflineDPOTrainer(policy, tokenizer, pairs, settings, out_dir, seed, accelerator)
    reference_seconds = trainer.load_reference(reference)
    resumed_at = trainer.resume() if resume else None
    t0 = time.time()
    last = trainer.train()
    seconds = time.time() - t0
    done_now = (trainer.num_steps - (resumed_at or 0)) * settings.batch_size
    policy = trainer.update.policy
    policy.config.use_cache = True
    return DPOResult(
        policy,
        {
            "pairs": len(pairs),
            "steps": trainer.num_steps,
            "pairs_trained": trainer.num_steps * settings.batch_size,
            "processes": accelerator.num_processes,
            "lora": settings.lora.enabled,
            "resumed_after_step": resumed_at,
            "reference_seconds": round(reference_seconds, 2),
            "train_seconds": round(seconds, 2),
            "pairs_per_second": round(done_now / max(seconds, 1e-9), 4),
            "last_step": last,
        },
    )
