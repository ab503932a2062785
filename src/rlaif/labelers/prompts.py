"""Judge prompts in the structure of Lee et al. 2023 (RLAIF, §2.1 and Appendix): preamble,
optional exemplars, the sample to annotate, and an ending that elicits `Preferred Summary=1|2`.

The wording is ours. Per task (TL;DR summaries, or dialogue responses for HH-RLHF), the preamble
says what makes a candidate good; the `cot` style asks for a rationale first (0-shot chain of
thought), the `base` style reads the answer at once. A pair is asked about in both orders [L01].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlaif.config import DatasetConfig
from rlaif.data.readers import DataError, read_rows
from rlaif.labelers.base import JudgeRequest

SYSTEM = "You are a careful and impartial judge of writing quality."

SUMMARIZE_PREAMBLE = """\
Your job is to compare two summaries of the same Reddit post and decide which one is better.
A good summary is much shorter than the post, yet it tells a reader what the post is about: the \
situation, what the author wants, and whatever else is needed to understand it. Judge each summary \
on four qualities:
- Coherence: the summary is easy to read and makes sense on its own, as a whole rather than as a \
string of fragments.
- Accuracy: every statement in the summary is supported by the post; nothing is invented, \
exaggerated or attributed to the wrong person.
- Coverage: the summary keeps what a reader needs most (usually the author's main problem or \
question) and leaves out minor details.
- Overall quality: the three qualities taken together, that is, how useful the summary would be \
to someone who has not read the post.
Do not prefer a summary for being longer, and overlook small grammar slips unless they hide the \
meaning."""

DIALOGUE_PREAMBLE = """\
Your job is to compare two responses that an AI assistant could give at the same point of a \
conversation with a person, and decide which one is better.
The better response is the more harmless one. A harmless response does not help with anything \
dangerous, illegal, unethical or hurtful to the person or to others, does not insult or demean \
anyone, and does not encourage harmful beliefs; when a request is harmful, it declines or steers \
the conversation somewhere safe, politely.
When both responses are equally harmless, prefer the one that is more helpful, honest and relevant \
to what the person said. The conversation before the responses is the same for both."""


@dataclass(frozen=True)
class Task:
    name: str
    preamble: str
    text_label: str
    """How the shared input is introduced (`Text`, `Conversation`)."""
    candidate: str
    """What is compared (`Summary`, `Response`); also names the answer key `Preferred Summary`."""
    cot_instruction: str
    base_instruction: str


TASKS = {
    "summarize": Task(
        "summarize",
        SUMMARIZE_PREAMBLE,
        "Text",
        "Summary",
        "Consider the coherence, accuracy, coverage and overall quality of each summary, and explain which one is better.",
        "Which summary is better? Answer with 1 or 2.",
    ),
    "dialogue": Task(
        "dialogue",
        DIALOGUE_PREAMBLE,
        "Conversation",
        "Response",
        "Consider how harmless and how helpful each response is, and explain which one is better.",
        "Which response is better? Answer with 1 or 2.",
    ),
}


def judge_text_from_prompt(prompt: str) -> str:
    """The TL;DR prompt without its `TL;DR:` ending: subreddit, title and post, as the judge sees them."""
    return prompt.rstrip().removesuffix("TL;DR:").rstrip()


@dataclass(frozen=True)
class JudgePrompt:
    task: Task
    style: str
    """`cot` or `base`."""
    max_rationale_tokens: int
    exemplars: tuple[dict, ...] = ()

    @property
    def prompt_id(self) -> str:
        """Recorded with every label, so labels from different prompts are never mixed unknowingly."""
        return f"{self.task.name}-{self.style}-{len(self.exemplars)}shot"

    @property
    def answer_key(self) -> str:
        return f"Preferred {self.task.candidate}="

    def shared_text(self) -> str:
        text = self.task.preamble + "\n\n"
        for k, ex in enumerate(self.exemplars, start=1):
            text += f"Example {k}:\n" + self._sample(ex["text"], ex["summary_1"], ex["summary_2"])
            if self.style == "cot":
                text += f"Rationale: {ex['rationale']}\n"
            text += f"{self.answer_key}{ex['preferred']}\n\n"
        return text + ("Now the one to judge:\n" if self.exemplars else "")

    def _sample(self, text: str, first: str, second: str) -> str:
        c = self.task.candidate
        return f"{self.task.text_label} - {text}\n{c} 1 - {first}\n{c} 2 - {second}\n"

    def request(self, text: str, first: str, second: str) -> JudgeRequest:
        """The question with `first` shown as candidate 1 and `second` as candidate 2."""
        c = self.task.candidate
        cot = self.style == "cot"
        instruction = self.task.cot_instruction if cot else self.task.base_instruction
        return JudgeRequest(
            system=SYSTEM,
            shared=self.shared_text(),
            group=f"{self.task.text_label} - {text}\n",
            item=f"{c} 1 - {first}\n{c} 2 - {second}\n\n{instruction}",
            assistant_prefix="Rationale:" if cot else self.answer_key,
            cue=f"\n{self.answer_key}",
            answer_instruction=f"Answer with only the number of the better {c.lower()}: 1 or 2.",
            max_rationale_tokens=self.max_rationale_tokens if cot else 0,
        )

    def pair_requests(self, text: str, a: str, b: str) -> list[JudgeRequest]:
        """[order ab: a is candidate 1, order ba: b is candidate 1] [L01]."""
        return [self.request(text, a, b), self.request(text, b, a)]


EXEMPLAR_FIELDS = ("text", "summary_1", "summary_2", "preferred")


def load_exemplars(path: str, style: str) -> tuple[dict, ...]:
    """Few-shot exemplars from a JSONL/JSON file; errors name the file, line and field."""
    exemplars = []
    for where, row in read_rows(DatasetConfig(path=path)):
        needed = EXEMPLAR_FIELDS + (("rationale",) if style == "cot" else ())
        for name in needed:
            if name not in row:
                raise DataError(f"{where}: field '{name}' is missing (exemplars need {', '.join(needed)})")
            if name != "preferred" and not isinstance(row[name], str):
                raise DataError(f"{where}: field '{name}' must be a string, got {type(row[name]).__name__}")
        if str(row["preferred"]) not in ("1", "2"):
            raise DataError(f"{where}: field 'preferred' must be 1 or 2, got {row['preferred']!r}")
        exemplars.append({**{k: row[k] for k in needed}, "preferred": str(row["preferred"])})
    if not exemplars:
        raise DataError(f"{Path(path)}: no exemplars")
    return tuple(exemplars)


def make_prompt(task: str, style: str, max_rationale_tokens: int, fewshot_file: str | None = None) -> JudgePrompt:
    exemplars = load_exemplars(fewshot_file, style) if fewshot_file else ()
    return JudgePrompt(TASKS[task], style, max_rationale_tokens, exemplars)
