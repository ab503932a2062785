"""The text a judge model reads: the one place a judge prompt meets a chat template.

Every backend that renders prompts itself (hf_local, vllm_offline, and openai_api's
`completions` endpoint, which has no tokenizer) calls these; the `chat` endpoint sends the same
system and user text as messages and lets the server apply the template.
"""

from __future__ import annotations

from rlaif.labelers.base import JudgeRequest


def chat_prompt(tokenizer, system: str | None, user: str, separator: str = "\n\n") -> str:
    """Everything before the assistant's first word: the tokenizer's chat template with the
    assistant turn opened, or, for a model without a template (and the completions endpoint,
    tokenizer None), the system and user text each followed by `separator`. No system text (None)
    sends no system turn; a chat template may then put in its model's default one."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}] if system is not None else []
        messages.append({"role": "user", "content": user})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return (system + separator if system is not None else "") + user + separator


def request_text(tokenizer, req: JudgeRequest) -> str:
    """The whole stage-1 text of a request: the chat prompt and the start of the assistant turn."""
    return chat_prompt(tokenizer, req.system, req.user, req.separator) + req.assistant_prefix


def answer_text(tokenizer, req: JudgeRequest, rationale: str) -> str:
    """The whole stage-2 text: the chat prompt and the assistant turn with the rationale, up to
    where the choices are read."""
    return chat_prompt(tokenizer, req.system, req.user, req.separator) + req.answer(rationale)
