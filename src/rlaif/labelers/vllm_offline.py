"""Labeler backend: vLLM's offline `LLM` engine (optional; `pip install vllm` on a GPU machine).

Prompts are rendered with the model's chat template, the assistant turn begun, as in hf_local.
Stage 1 generates every rationale in one `generate` call; stage 2 asks for one token with
`logprobs=top_logprobs` on prompt + rationale + cue. A choice of several tokens ("10") takes one
more such call with the tokens read so far appended [L08]. vLLM's automatic prefix caching gives the
reuse hf_local does by hand: the preamble, the post and the stage-1 context are shared blocks.
"""

from __future__ import annotations

from rlaif.config import LabelerSettings
from rlaif.labelers.base import ChoiceReading, JudgeRequest, JudgeResult, TopTokens, decide, read_choices
from rlaif.labelers.chat import request_text
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
        return request_text(self.tokenizer, req)

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
        readings, errors = self._read(requests, prompts)
        results = []
        for req, rationale, reading, error in zip(requests, rationales, readings, errors):
            rationale = rationale.strip() if rationale is not None else None
            if error is not None:
                results.append(JudgeResult(rationale, None, None, error, failed=True))
                continue
            found = reading.found or not req.undecided_outside_top_k
            results.append(
                decide(reading.masses, found, self.settings.top_logprobs, rationale, [t for t, _ in reading.top])
            )
        return results

    def _read(self, requests: list[JudgeRequest], prompts: list[str]):
        """Every request's choice probabilities, in rounds: one `generate` call reads the answer
        position of all requests, and one more each time some choice needs another token [L08]."""
        params = self._params(temperature=0.0, max_tokens=1, logprobs=self.settings.top_logprobs)
        readers = [read_choices(r.choices) for r in requests]
        pending = {i: next(reader) for i, reader in enumerate(readers)}  # request -> text to append
        readings: list[ChoiceReading | None] = [None] * len(requests)
        errors: list[str | None] = [None] * len(requests)
        while pending:
            order = list(pending)
            outs = self.engine.generate([prompts[i] + pending[i] for i in order], params, use_tqdm=False)
            pending = {}
            for i, out in zip(order, outs):
                steps = out.outputs[0].logprobs
                if not steps:
                    errors[i] = "failed: the engine returned no logprobs"
                    continue
                try:
                    pending[i] = readers[i].send(self._top(steps[0]))
                except StopIteration as done:
                    readings[i] = done.value
        return readings, errors

    def _top(self, step: dict) -> TopTokens:
        """token id -> Logprob(logprob, rank, decoded_token) as (text, logprob), most likely first; ids
        that decode alike are summed by the reader."""
        top = [
            (lp.decoded_token if lp.decoded_token is not None else self.tokenizer.decode([tid]), lp.logprob)
            for tid, lp in step.items()
        ]
        return sorted(top, key=lambda t: -t[1])[: self.settings.top_logprobs]
