"""Online AI feedback (OAIF, Guo et al. 2024, arXiv 2402.04792): at every step, two summaries per
prompt from the current policy, a preference for each pair from a judge in the loop, one DPO step.

Each step, numbered as the paper's Algorithm 1:
    1 prompts of the step (a function of seed and step)   2 two samples each from the current policy
    3 the judge's P(a > b) per pair (rank 0 asks it for every process's pairs; labels.jsonl)
    4 reference log-probs (SFT: the adapter off, or the frozen copy)   5 one DPO optimizer step
The judge is a function rows -> results (the stage builds it: the LLM labeler or a reward model).
Its answers are appended to labels.jsonl as they come; a resumed run re-samples the same pairs
(the sampling generator is checkpointed) and takes their labels from the file instead of asking
again [P09]. Writes into `out_dir`: labels.jsonl, metrics.jsonl, samples.jsonl, checkpoints/.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rlaif.artifacts import gather_objects, is_main_process
from rlaif.config import ConfigError, OAIFConfig
from rlaif.dpo.sequences import EncodedPair
from rlaif.dpo.trainer import DPOStep, MicroBatch, step_indices, step_log
from rlaif.jsonl import AppendLog
from rlaif.models import encode_left, save_snapshot_at, snapshot_steps
from rlaif.rl.checkpoint import checkpoint_dirs, load_checkpoint, save_checkpoint
from rlaif.rl.masking import sequence_lengths, truncate_response
from rlaif.rl.sampling import sample

Judge = Callable[[list[dict]], list[dict]]
"""Rows {prompt, summary_a, summary_b} -> one result each, with `p_a` (P(a > b), or None to leave
the pair out of the loss) and whatever the judge wants kept in labels.jsonl."""


class OnlineDPOTrainer:
    def __init__(
        self,
        policy,
        reference,
        tokenizer,
        prompts: list[dict],
        settings: OAIFConfig,
        judge: Judge | None,
        out_dir: Path,
        seed: int,
        accelerator,
    ):
        """`reference`: the frozen SFT model (full fine-tuning) or None (LoRA: the adapter off).
        `judge`: called on rank 0 only (None on the other ranks)."""
        self.tokenizer, self.prompts, self.settings, self.judge = tokenizer, prompts, settings, judge
        self.out_dir, self.seed, self.acc = Path(out_dir), seed, accelerator
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        if settings.batch_size % (settings.micro_batch_size * self.world):
            raise ConfigError(
                f"oaif.batch_size {settings.batch_size} is not a multiple of micro_batch_size x processes "
                f"({settings.micro_batch_size} x {self.world})"
            )
        self.per_rank = settings.batch_size // self.world
        self.num_steps = settings.total_prompts // settings.batch_size
        self.update = DPOStep(policy, settings, self.num_steps, accelerator, tokenizer.pad_token_id)
        self.snapshot_steps = snapshot_steps(self.num_steps, settings.snapshots)
        self.reference = reference.to(accelerator.device) if reference is not None else None
        # one sampling stream per process, on the policy's device, saved in checkpoints [P07]
        self.generators = {
            "sample": torch.Generator(device=accelerator.device).manual_seed(seed * 7919 + 2 * self.rank)
        }
        self.step = 0
        self.ckpt_root = self.out_dir / "checkpoints"
        self.labels_reused = 0

    def resume(self) -> int | None:
        dirs = checkpoint_dirs(self.ckpt_root)
        if not dirs:
            return None
        self.step = load_checkpoint(
            dirs[-1], self.update.scorer, self.update.optimizer, self.update.scheduler, self.generators,
            self.rank, self.world,
        )  # fmt: skip
        return self.step

    # --- 1-2: prompts and samples ---
    @torch.no_grad()
    def sample_pairs(self, records: list[dict]) -> tuple[list[EncodedPair], list[dict]]:
        """Two summaries per prompt from the current policy: the pairs as ids, and rows with their text."""
        tok, s = self.tokenizer, self.settings
        enc = encode_left(tok, [r["prompt"] for r in records], self.acc.device)
        queries, mask = enc.input_ids.repeat_interleave(2, dim=0), enc.attention_mask.repeat_interleave(2, dim=0)
        policy = self.update.policy
        policy.eval()
        out = sample(
            policy, queries, mask, s.response_length, s.temperature, tok.eos_token_id, tok.pad_token_id,
            self.generators["sample"], group_size=2,
        )  # fmt: skip
        responses = truncate_response(out.responses, tok.eos_token_id, tok.pad_token_id)  # (2B, T)
        ends = sequence_lengths(responses, tok.eos_token_id).tolist()  # last real token per row
        ids = [tuple(row[: end + 1]) for row, end in zip(responses.tolist(), ends)]
        texts = [t.strip() for t in tok.batch_decode(responses, skip_special_tokens=True)]
        pairs, rows = [], []
        for i, r in enumerate(records):
            prompt_ids = tuple(enc.input_ids[i][enc.attention_mask[i].bool()].tolist())
            a, b = 2 * i, 2 * i + 1
            pairs.append(EncodedPair(prompt_ids, ids[a], ids[b]))
            rows.append({
                "id": r["id"], "prompt": r["prompt"], "summary_a": texts[a], "summary_b": texts[b],
                "tokens": [len(ids[a]), len(ids[b])],
                "ended_with_eos": [ids[a][-1] == tok.eos_token_id, ids[b][-1] == tok.eos_token_id],
            })  # fmt: skip
        return pairs, rows

    # --- 3: the judge, on rank 0, with the log ---
    def labels(self, rows: list[dict], log: AppendLog | None) -> tuple[list[float | None], list[dict]]:
        """P(a > b) or None for this process's rows, and (rank 0) every process's labeled rows."""
        start = self.rank * self.per_rank
        for i, row in enumerate(rows):
            row["step"], row["index"] = self.step + 1, start + i
        every = gather_objects(rows)
        labeled: list[dict] = []
        if is_main_process():
            known = {(r["step"], r["index"]): r for r in log.rows}
            todo = []
            for row in every:
                old = known.get((row["step"], row["index"]))
                if old is not None and (old["summary_a"], old["summary_b"]) == (row["summary_a"], row["summary_b"]):
                    labeled.append(old)  # labeled before a kill: the judge is not asked again [P09]
                    self.labels_reused += 1
                else:
                    labeled.append(None)
                    todo.append(row)
            answers = iter(self.judge(todo) if todo else [])
            for k, row in enumerate(every):
                if labeled[k] is None:
                    labeled[k] = {**row, **next(answers)}
                    log.append(labeled[k])
        p_all = _broadcast_object([r["p_a"] for r in labeled] if is_main_process() else None, self.world)
        return p_all[start : start + self.per_rank], labeled

    # --- the loop ---
    def train(self, max_steps: int | None = None) -> dict:
        s = self.settings
        end = self.num_steps if max_steps is None else min(self.num_steps, self.step + max_steps)
        bar = tqdm(total=self.num_steps, initial=self.step, desc="oaif", unit="step", disable=not is_main_process())
        last: dict = {}
        with contextlib.ExitStack() as logs:
            # labels are kept whatever the step (a resumed run reuses them); metrics and samples of
            # steps after the checkpoint are redone
            log, self.metrics_log, self.samples_log = (
                AppendLog(self.out_dir / "labels.jsonl") if is_main_process() else None,
                step_log(self.out_dir / "metrics.jsonl", self.step),
                step_log(self.out_dir / "samples.jsonl", self.step),
            )
            for opened in (log, self.metrics_log, self.samples_log):
                if opened is not None:
                    logs.enter_context(opened)
            while self.step < end:
                t0 = time.time()
                idx = step_indices(len(self.prompts), self.step, s.batch_size, self.rank, self.per_rank, self.seed)
                records = [self.prompts[i] for i in idx]
                pairs, rows = self.sample_pairs(records)  # 1-2
                t1 = time.time()
                p_a, labeled = self.labels(rows, log)  # 3
                t2 = time.time()
                ref = self.update.reference_logprobs(pairs, self.reference, s.micro_batch_size)  # 4 (B, 2)
                device = self.acc.device
                weight = torch.tensor([0.0 if p is None else 1.0 for p in p_a], device=device)
                target = torch.tensor([0.5 if p is None else float(p) for p in p_a], device=device)
                micro = [
                    MicroBatch(pairs[j : j + s.micro_batch_size], target[j : j + s.micro_batch_size],
                               ref[j : j + s.micro_batch_size], weight[j : j + s.micro_batch_size])
                    for j in range(0, len(pairs), s.micro_batch_size)
                ]  # fmt: skip
                row = self.update.step(micro, self.step)  # 5
                self.step += 1
                t3 = time.time()
                last = self._log(row, labeled, t0, t1, t2, t3)
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss/dpo'] if last['loss/dpo'] is not None else float('nan'):.4f}")
                save_snapshot_at(self.update.policy, self.out_dir / "trajectory", self.step, self.snapshot_steps)
                if self.step % s.save_steps == 0 and self.step < self.num_steps:
                    save_checkpoint(
                        self.ckpt_root, self.step, self.update.scorer, self.update.optimizer, self.update.scheduler,
                        self.generators, self.rank, self.world, s.save_total_limit,
                    )  # fmt: skip
        bar.close()
        return last

    def _log(self, row: dict, labeled: list[dict], t0: float, t1: float, t2: float, t3: float) -> dict:
        """Rank 0 writes the step's metrics (labels and lengths of every process's pairs) and samples."""
        if not is_main_process():
            return row
        decided = [r for r in labeled if r["p_a"] is not None]
        both = [r for r in labeled if _order_picks(r) is not None]
        tokens = [n for r in labeled for n in r["tokens"]]
        eos = [e for r in labeled for e in r["ended_with_eos"]]
        out = {
            "step": self.step,
            "prompts": self.step * self.settings.batch_size,
            **row,
            "labels/in_loss_rate": len(decided) / len(labeled),
            "labels/mean_p_a": sum(r["p_a"] for r in decided) / len(decided) if decided else None,
            "labels/mean_confidence": sum(max(r["p_a"], 1 - r["p_a"]) for r in decided) / len(decided) if decided else None,
            "labels/order_agreement": sum(_order_picks(r)[0] == _order_picks(r)[1] for r in both) / len(both) if both else None,
            "labels/reused": self.labels_reused,
            "response/length": sum(tokens) / len(tokens),
            "response/eos_rate": sum(eos) / len(eos),
            "time/sample_s": t1 - t0,
            "time/label_s": t2 - t1,
            "time/update_s": t3 - t2,
            "time/prompts_per_second": self.settings.batch_size / (t3 - t0),
        }  # fmt: skip
        self.metrics_log.append(out)
        if self.step % self.settings.sample_steps == 0 or self.step == 1:
            for r in labeled[:2]:
                self.samples_log.append(
                    {k: r[k] for k in ("step", "id", "prompt", "summary_a", "summary_b", "p_a")},
                )
        return out


def _order_picks(row: dict) -> tuple[bool, bool] | None:
    """(order ab picks a, order ba picks a) for an AI label with both orders answered, else None."""
    orders = {o.get("order"): o for o in row.get("orders", [])}
    ab, ba = orders.get("ab"), orders.get("ba")
    if not ab or not ba or ab.get("p_first") is None or ba.get("p_second") is None:
        return None
    return ab["p_first"] > 0.5, ba["p_second"] > 0.5


def _broadcast_object(obj, world: int):
    """Rank 0's object on every process."""
    if world == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj], from_process=0)[0]
