"""Labeler backend: vLLM's offline `LLM` engine (optional; `pip install vllm` on a GPU machine).

Prompts are rendered with the model's chat template, the assistant turn begun, as in hf_local.
Stage 1 generates every rationale in one `generate` call; stage 2 asks for one token with
`logprobs=top_logprobs` on prompt + rationale + cue. vLLM's automatic prefix caching gives the
reuse hf_local does by hand: the preamble, the post and the stage-1 context are shared blocks.
"""

from __future__ import annotations

from rlaif.config import LabelerSettings
from rlaif.labelers.base import JudgeRequest, JudgeResult, choice_mass, decide
from rlaif.models import ModelLoadError, resolve_model


class VLLMOfflineLabeler:
    backend = "vllm_offline"

    def __init__(self, settings: LabelerSettings, engine=None, sampling_params=None):
        """`engine`/`sampling_params`: an `LLM` and the `SamplingParams` class; built from the
        settings when not given (tests pass stand-ins, as vllm needs a GPU)."""
        self.settings, self.model = settings, settings.model
        self.pairs_per_call = 256  # the engine schedules its own batches; bigger calls fill them
        if engine is None:
            try:
                from vllm import LLM, SamplingParams
            except ImportError:
                raise ModelLoadError(
                    "label.labeler.backend vllm_offline needs vllm: `pip install vllm` (an optional extra)"
                ) from None
            engine = LLM(
                model=resolve_model(settings.model),
                dtype=settings.dtype,
                tensor_parallel_size=settings.tensor_parallel_size,
                enable_prefix_caching=True,
                trust_remote_code=False,
            )
            sampling_params = SamplingParams
        self.engine, self._params = engine, sampling_params
        self.tokenizer = engine.get_tokenizer()

    def render(self, req: JudgeRequest) -> str:
        messages = [{"role": "system", "content": req.system}, {"role": "user", "content": req.user}]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{req.system}\n\n{req.user}\n\n"
        return text + req.assistant_prefix

    def judge(self, requests: list[JudgeRequest]) -> list[JudgeResult]:
        prompts = [self.render(r) for r in requests]
        rationales: list[str | None] = [None] * len(requests)
        for budget in sorted({r.max_rationale_tokens for r in requests} - {0}):
            idx = [i for i, r in enumerate(requests) if r.max_rationale_tokens == budget]
            params = self._params(
                temperature=self.settings.rationale_temperature, max_tokens=budget, stop=[requests[idx[0]].cue.strip()]
            )
            for i, out in zip(idx, self.engine.generate([prompts[i] for i in idx], params, use_tqdm=False)):
                rationales[i] = out.outputs[0].text
                prompts[i] += rationales[i] + requests[i].cue
        k = self.settings.top_logprobs
        outs = self.engine.generate(prompts, self._params(temperature=0.0, max_tokens=1, logprobs=k), use_tqdm=False)
        results = []
        for req, rationale, out in zip(requests, rationales, outs):
            rationale = rationale.strip() if rationale is not None else None
            steps = out.outputs[0].logprobs
            if not steps:
                results.append(
                    JudgeResult(rationale, None, None, None, "failed: the engine returned no logprobs", failed=True)
                )
                continue
            # token id -> Logprob(logprob, rank, decoded_token); ids that decode alike are summed
            top = [
                (lp.decoded_token if lp.decoded_token is not None else self.tokenizer.decode([tid]), lp.logprob)
                for tid, lp in steps[0].items()
            ]
            top = sorted(top, key=lambda t: -t[1])[:k]
            probs = choice_mass(top, req.choices)
            results.append(decide(probs, probs[0] + probs[1] > 0, k, rationale, [t for t, _ in top]))
        return results
