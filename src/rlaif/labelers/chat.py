"""The text a judge model reads: the one place a judge prompt meets a chat template.

Every backend that renders prompts itself (hf_local, vllm_offline, and openai_api's
`completions` endpoint, which has no tokenizer) calls `chat_prompt`; the `chat` endpoint sends
the same system and user text as messages and lets the server apply the template.
"""

from __future__ import annotations

from rlaif.labelers.base import JudgeRequest


def chat_prompt(tokenizer, system: str, user: str) -> str:
    """Everything before the assistant's first word: the tokenizer's chat template with the
    assistant turn opened, or, for a model without a template (and the completions endpoint,
    tokenizer None), the system and user text followed by blank lines."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{system}\n\n{user}\n\n"


def request_text(tokenizer, req: JudgeRequest) -> str:
    """The whole stage-1 text of a request: the chat prompt and the start of the assistant turn."""
    return chat_prompt(tokenizer, req.system, req.user) + req.assistant_prefix
