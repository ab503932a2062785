"""Every LLM judge, behind one protocol: `make_labeler(settings).judge(requests) -> results`.

    base.py          the protocol (JudgeRequest with N choices -> JudgeResult with P(each choice)),
                     choice reading from top tokens, the backend registry
    chat.py          the one chat-template build every backend uses
    prompts.py       every judge's prompt: the `label` stage's pairs, the evaluation judge, d-RLAIF's rating
    annotate.py      labeling pairs in both orders, soft labels, label metrics
    eval_judge.py    the evaluation judge's two-order protocol (win/tie/loss rows)
    rating.py        the d-RLAIF rating judge (1-10, rescaled to [-1, 1])
    hf_local.py, openai_api.py, vllm_offline.py   the backends (transformers, any OpenAI-compatible
                     server, vLLM's offline engine)

A new judge is a prompt that builds requests; the backends and their registry serve it as is.
"""

from rlaif.labelers.base import BACKENDS, JudgeRequest, JudgeResult, Labeler, LabelingIncomplete, make_labeler, register

__all__ = ["BACKENDS", "JudgeRequest", "JudgeResult", "Labeler", "LabelingIncomplete", "make_labeler", "register"]
