"""LLM judges behind one interface: `make_labeler(settings).judge(requests) -> results`.

Backends: hf_local (transformers, default), openai_api (any OpenAI-compatible server), vllm_offline
(vLLM's engine, optional). Prompts for the `label` stage are in `prompts`; the loop that labels
pairs in both orders and the metrics are in `annotate`.
"""

from rlaif.labelers.base import BACKENDS, JudgeRequest, JudgeResult, Labeler, LabelingIncomplete, make_labeler, register

__all__ = ["BACKENDS", "JudgeRequest", "JudgeResult", "Labeler", "LabelingIncomplete", "make_labeler", "register"]
