"""Labeler backend: a transformers causal LM in this process (default: embedded SmolLM2-135M-Instruct).

The prompt is the model's chat template with the assistant turn already begun (`Rationale:`), so
the model continues its own turn. Each request is four token segments, encoded separately so the
two paths below see identical ids:

    prefix = template head + system + shared preamble   (the same for every request)
    group  = the post                                    (the same for both orders of a pair)
    item   = candidates + instruction + template tail + assistant prefix
    cue    = `\\nPreferred Summary=` after the rationale

`judge` (optimised) runs them through one KV cache [L02]: the prefix is encoded once per labeler
and copied into each batch; each post once per pair and copied to its two orders; the rationale is
decoded greedily on that cache; and stage 2 appends only the cue to it, instead of re-encoding
prompt + rationale. Rows are padded in the middle (after the shared part) with position ids that
skip the padding, so every row computes what it would alone. `judge_naive` is the plain baseline
(`generate` per stage, full re-encoding) the benchmark and tests compare against.

A choice spelled with several tokens ("10" as `1` `0`) is read on the same cache: each row is
copied once per token sequence that starts a longer choice and stepped one token [L08], so
P("10") = P(`1`)·P(`0` | `1`) and P("1") = P(`1`)·(1 − P(`0` | `1`)) [D45].
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from rlaif.config import LabelerSettings
from rlaif.labelers.base import JudgeRequest, JudgeResult, decide
from rlaif.labelers.chat import chat_prompt, request_text
from rlaif.models import load_causal_lm, load_tokenizer

_SLOT = "\x00USER\x00"  # placeholder splitting the rendered chat template around the user text


def _run_key(req: JudgeRequest) -> tuple:
    """What the requests of one cached batch must have in common."""
    return (
        req.system,
        req.shared,
        req.max_rationale_tokens,
        req.choices,
        req.cue,
        req.assistant_prefix,
        req.undecided_outside_top_k,
    )


class HFLocalLabeler:
    backend = "hf_local"

    def __init__(self, settings: LabelerSettings):
        self.settings = settings
        self.model = settings.model
        self.pairs_per_call = max(1, settings.batch_size // 2)  # one forward batch of both orders
        self.tokenizer = load_tokenizer(settings.model, padding_side="left")
        self.lm = load_causal_lm(settings.model, self.tokenizer, settings.dtype).eval()
        if torch.cuda.is_available():
            self.lm.to("cuda")
        self._prefix_caches: dict[str, tuple[list[int], DynamicCache]] = {}
        self._templates: dict[str, tuple[str, str]] = {}
        self._choice_paths: dict[tuple, list[tuple[int, tuple[int, ...]]]] = {}

    # --- prompt -> token segments ---
    def render(self, req: JudgeRequest) -> str:
        """The stage-1 text the model reads (chat template, assistant turn begun)."""
        return request_text(self.tokenizer, req)

    def _template(self, system: str) -> tuple[str, str]:
        """(text before the user content, text after it up to the start of the assistant turn)."""
        if system not in self._templates:
            head, tail = chat_prompt(self.tokenizer, system, _SLOT).split(_SLOT)
            self._templates[system] = (head, tail)
        return self._templates[system]

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def segments(self, req: JudgeRequest) -> tuple[str, list[int], list[int], list[int]]:
        """(prefix text, group ids, item ids, cue ids); the prefix ids come from `_prefix`."""
        head, tail = self._template(req.system)
        item = req.item + tail + req.assistant_prefix
        return head + req.shared, self._ids(req.group), self._ids(item), self._ids(req.cue)

    def choice_paths(self, choices: tuple[str, ...], before: str = "") -> list[tuple[int, tuple[int, ...]]]:
        """(choice index, token ids) of every spelling of every choice: the choice alone, and with
        a leading space where that is one token (tokenizers spell a digit either way) [L03]. A
        choice of several tokens is read token by token after `before` (the text the answer
        follows), so its spelling must continue that text's tokens; that is checked here."""
        key = (choices, before)
        if key not in self._choice_paths:
            paths = []
            for i, choice in enumerate(choices):
                spellings = [tuple(self._ids(choice))]
                spaced = tuple(self._ids(" " + choice))
                if len(spaced) == 1 and spaced not in spellings:
                    spellings.append(spaced)
                if not spellings[0]:
                    raise ValueError(f"choice {choice!r} encodes to no token with {self.model}'s tokenizer")
                paths += [(i, ids) for ids in sorted(spellings)]
            if any(len(ids) > 1 for _, ids in paths):
                base = self._ids(before)
                for choice in choices:
                    if self._ids(before + choice) != base + self._ids(choice):
                        raise ValueError(
                            f"{self.model}'s tokenizer merges {before!r} with the answer {choice!r}, so a "
                            f"several-token answer cannot be read after it"
                        )
            self._choice_paths[key] = paths
        return self._choice_paths[key]

    def _answer_paths(self, req: JudgeRequest) -> list[tuple[int, tuple[int, ...]]]:
        return self.choice_paths(req.choices, req.cue if req.max_rationale_tokens > 0 else req.assistant_prefix)

    # --- the optimised path ---
    @torch.no_grad()
    def judge(self, requests: list[JudgeRequest]) -> list[JudgeResult]:
        return self._batched(requests, self._judge_batch)

    @torch.no_grad()
    def judge_naive(self, requests: list[JudgeRequest]) -> list[JudgeResult]:
        """Baseline: full prompts through `generate` in each stage, no cache reuse."""
        return self._batched(requests, self._judge_batch_naive)

    def _batched(self, requests, fn) -> list[JudgeResult]:
        results: list[JudgeResult] = []
        size = self.settings.batch_size
        for start in range(0, len(requests), size):
            batch = requests[start : start + size]
            # One batch shares its prefix, rationale budget and answer; split where a request differs.
            runs, current = [], [batch[0]]
            for req in batch[1:]:
                if _run_key(req) == _run_key(current[0]):
                    current.append(req)
                else:
                    runs.append(current)
                    current = [req]
            runs.append(current)
            for run in runs:
                results += fn(run)
        return results

    def _prefix(self, text: str) -> tuple[list[int], DynamicCache]:
        """The shared prefix's ids and KV cache (batch 1), computed once per labeler [L02]."""
        if text not in self._prefix_caches:
            ids = self._ids(text)
            cache = DynamicCache(config=self.lm.config)
            self.lm(
                input_ids=torch.tensor([ids], device=self.lm.device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            self._prefix_caches[text] = (ids, cache)
        return self._prefix_caches[text]

    def _extend(self, cache: DynamicCache, mask: torch.Tensor, ids: torch.Tensor, new_mask: torch.Tensor):
        """Append tokens `ids` (B, S) to every row; `new_mask` (B, S) marks the real ones. Position
        ids count only real tokens, so padding anywhere leaves each row's computation unchanged."""
        positions = mask.sum(1, keepdim=True) + new_mask.cumsum(1) - 1  # (B, S)
        mask = torch.cat([mask, new_mask], dim=1)  # (B, T + S)
        out = self.lm(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions.clamp(min=0),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1].float(), mask  # (B, V)

    def _pad_left(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(map(len, seqs))
        ids = [[self.tokenizer.pad_token_id] * (width - len(s)) + s for s in seqs]
        mask = [[0] * (width - len(s)) + [1] * len(s) for s in seqs]
        device = self.lm.device
        return torch.tensor(ids, device=device), torch.tensor(mask, device=device)

    def _judge_batch(self, reqs: list[JudgeRequest]) -> list[JudgeResult]:
        device = self.lm.device
        segs = [self.segments(r) for r in reqs]
        _, prefix_cache = self._prefix(segs[0][0])
        # 1. each distinct post once, on copies of the shared prefix cache
        group_keys = list(dict.fromkeys(reqs[i].group for i in range(len(reqs))))
        row_group = torch.tensor([group_keys.index(r.group) for r in reqs], device=device)
        group_ids = [next(s[1] for r, s in zip(reqs, segs) if r.group == g) for g in group_keys]
        first = torch.zeros(len(group_keys), dtype=torch.long, device=device)
        cache = DynamicCache(
            ddp_cache_data=[(layer.keys[first], layer.values[first]) for layer in prefix_cache.layers],
            config=self.lm.config,
        )
        mask = torch.ones(len(group_keys), prefix_cache.get_seq_length(), dtype=torch.long, device=device)
        if any(group_ids):  # a judge whose requests share no post (the rating) has none to encode
            _, mask = self._extend(cache, mask, *self._pad_left(group_ids))
        # 2. copy each post's cache to its rows (both orders), then the order-specific item
        cache.batch_select_indices(row_group)
        mask = mask[row_group]
        logits, mask = self._extend(cache, mask, *self._pad_left([s[2] for s in segs]))
        # 3. stage 1 rationale on the same cache; stage 2 appends only the cue [L02]
        rationales = None
        if reqs[0].max_rationale_tokens > 0:
            cue = torch.tensor(segs[0][3], device=device)
            rationales, logits, mask = self._decode(cache, mask, logits, reqs[0].max_rationale_tokens, cue)

        def step(nodes: list[tuple[int, ...]], parents: list[int]) -> torch.Tensor:
            """Each node's parent rows copied and stepped on the node's last token [L08]; (len(nodes)*B, V)."""
            nonlocal mask
            index = torch.cat([torch.arange(len(reqs), device=device) + block * len(reqs) for block in parents])
            cache.batch_select_indices(index)
            ids = torch.tensor([n[-1] for n in nodes], device=device).repeat_interleave(len(reqs))[:, None]
            logits, mask = self._extend(cache, mask[index], ids, torch.ones_like(ids))
            return logits

        return self._read(logits, reqs, rationales, step)

    def _decode(self, cache, mask, logits, max_new: int, cue: torch.Tensor):
        """Greedy (or sampled) rationale up to EOS or `max_new` tokens; the EOS itself and every
        later token are fed masked, so they are invisible to stage 2. The last step and the cue go
        through one forward."""
        eos, rows = self.tokenizer.eos_token_id, logits.shape[0]
        finished = torch.zeros(rows, dtype=torch.bool, device=logits.device)
        generated = []
        for step in range(max_new):
            token = self._pick(logits)  # (B,)
            alive = ~finished & (token != eos)
            generated.append(torch.where(alive, token, -1))
            finished |= token == eos
            ids, new_mask = token[:, None], alive[:, None].long()
            done = step == max_new - 1 or bool(finished.all())
            if done:
                ids = torch.cat([ids, cue.expand(rows, -1)], dim=1)
                new_mask = torch.cat(
                    [new_mask, torch.ones(rows, len(cue), dtype=torch.long, device=logits.device)], dim=1
                )
            logits, mask = self._extend(cache, mask, ids, new_mask)
            if done:
                break
        tokens = torch.stack(generated, dim=1).tolist()  # (B, T_rationale)
        return [[t for t in row if t >= 0] for row in tokens], logits, mask

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        temperature = self.settings.rationale_temperature
        if temperature <= 0:
            return logits.argmax(-1)
        return torch.multinomial(torch.softmax(logits / temperature, -1), 1)[:, 0]

    def _read(self, logits: torch.Tensor, reqs: list[JudgeRequest], rationales, step) -> list[JudgeResult]:
        """Probabilities of the choices from the full softmax (B, V) [L03], several-token choices
        stepped on by `step(nodes, parent blocks)` [L08]."""
        probs = torch.softmax(logits.float(), dim=-1)  # (B, V)
        k = self.settings.top_logprobs
        top = probs.topk(k, dim=-1).indices.tolist()  # (B, k)
        paths = self._answer_paths(reqs[0])
        masses = self._choice_masses(probs, paths, len(reqs[0].choices), step)  # (B, N)
        results = []
        for i, req in enumerate(reqs):
            in_top = not req.undecided_outside_top_k or any(ids[0] in top[i] for _, ids in paths)
            rationale = self.tokenizer.decode(rationales[i], skip_special_tokens=True).strip() if rationales else None
            shown = [self.tokenizer.decode([t]) for t in top[i][:5]]
            results.append(decide(masses[i].tolist(), in_top, k, rationale, shown))
        return results

    @staticmethod
    def _choice_masses(probs: torch.Tensor, paths, num_choices: int, step) -> torch.Tensor:
        """(B, N) P(each choice) from root probabilities (B, V). Every token sequence that starts a
        longer choice is a node of a trie; `step` gives the next-token logits after each node,
        depth by depth. A choice's probability is the product along its tokens, times the share
        that does not go on to a longer choice: P("1") = P(`1`)·(1 − P(`0` | `1`)) [D45]."""
        rows = probs.shape[0]
        following: dict[tuple[int, ...], set[int]] = {}  # node -> next tokens that stay in the trie
        for _, ids in paths:
            for d in range(len(ids)):
                following.setdefault(ids[:d], set()).add(ids[d])
        dist = {(): probs}
        layout = [()]  # the node of each block of `rows` rows in the cache, in order
        for depth in range(1, max(len(ids) for _, ids in paths)):
            nodes = sorted(n for n in following if len(n) == depth)
            logits = step(nodes, [layout.index(n[:-1]) for n in nodes])
            level = torch.softmax(logits.float(), dim=-1)  # (len(nodes) * B, V)
            for j, node in enumerate(nodes):
                dist[node] = level[j * rows : (j + 1) * rows]
            layout = nodes
        masses = torch.zeros(rows, num_choices, dtype=torch.float32, device=probs.device)
        for choice, ids in paths:
            p = torch.ones(rows, dtype=torch.float32, device=probs.device)
            for d in range(len(ids)):
                p = p * dist[ids[:d]][:, ids[d]]
            if ids in dist:  # a longer choice goes on from here: keep the share that stops
                p = p * (1 - dist[ids][:, sorted(following[ids])].sum(-1))
            masses[:, choice] += p
        return masses

    # --- the naive baseline ---
    def _generate(self, seqs: list[list[int]], max_new: int, **kwargs):
        ids, mask = self._pad_left(seqs)
        return ids.shape[1], self.lm.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            **kwargs,
        )

    def _judge_batch_naive(self, reqs: list[JudgeRequest]) -> list[JudgeResult]:
        if reqs[0].max_rationale_tokens > 0 and self.settings.rationale_temperature > 0:
            raise ValueError("judge_naive decodes greedily; set rationale_temperature to 0 to compare")
        segs = [self.segments(r) for r in reqs]
        prompts = [self._ids(s[0]) + s[1] + s[2] for s in segs]
        rationales = None
        if reqs[0].max_rationale_tokens > 0:
            width, out = self._generate(prompts, reqs[0].max_rationale_tokens)
            eos = self.tokenizer.eos_token_id
            rationales = []
            for row in out[:, width:].tolist():
                rationales.append(row[: row.index(eos)] if eos in row else row)
            prompts = [p + r + s[3] for p, r, s in zip(prompts, rationales, segs)]
        _, out = self._generate(prompts, 1, output_logits=True, return_dict_in_generate=True)

        def step(nodes: list[tuple[int, ...]], parents: list[int]) -> torch.Tensor:
            """Full forward passes of prompt + each node's tokens (no cache); last position's logits."""
            ids, mask = self._pad_left([p + list(node) for node in nodes for p in prompts])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            return self.lm(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits[:, -1]

        return self._read(out.logits[0], reqs, rationales, step)
