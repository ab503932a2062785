"""Every judge's prompt, in one place: the `label` stage's pairwise question, the evaluation
judge's and the d-RLAIF rating's.

The pairwise prompts follow the structure of Lee et al. 2023 (RLAIF, §2.1 and Appendix): preamble,
optional exemplars, the sample to annotate, and an ending that elicits `Preferred Summary=1|2`.
The wording is ours. Per task (TL;DR summaries, dialogue responses for HH-RLHF, or the evaluation
of TL;DR summaries), the preamble says what makes a candidate good; the `cot` style asks for a
rationale first (0-shot chain of thought), the `base` style reads the answer at once. A pair is
asked about in both orders [L01]. The rating prompt asks for a 1-10 score of one summary [D45].
Each prompt turns its inputs into `JudgeRequest`s, which every backend answers.
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


# The evaluation judge's question paraphrases the one Huang et al. 2024 (arXiv 2403.17031) put to their
# GPT judge of TL;DR summaries, taken from Rafailov et al. 2023 (DPO, arXiv 2305.18290): which summary
# gets the post's most important points across without minor or irrelevant details, precise and
# concise. The wording is ours. [E02]
EVAL_PREAMBLE = """\
You will read a Reddit post and two summaries of it. Decide which summary better conveys the \
points of the post that matter most, while leaving out details that are minor or beside the \
point. The better summary is accurate and to the point: it says what matters, and says it briefly. \
Do not favour a summary for being longer or for the position in which it is shown."""


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


EVAL_TASK = Task(
    "tldr-eval",
    EVAL_PREAMBLE,
    "Text",
    "Summary",
    "In a sentence or two, say which summary captures the key points more accurately and concisely.",
    "Which summary captures the key points more accurately and concisely? Answer with 1 or 2.",
)


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


def eval_prompt(style: str, max_rationale_tokens: int) -> JudgePrompt:
    """The evaluation judge's prompt [E02]."""
    return JudgePrompt(EVAL_TASK, style, max_rationale_tokens)


# ----------------------------------------------------------------------------------------------
# d-RLAIF: one summary rated 1-10 (Lee et al. 2023, §2.3) [D45]

RATING_INSTRUCTION = (
    "Rate the summary below on a scale of 1 to 10, where 1 is useless or wrong and 10 is an excellent "
    "summary. Answer with the number only."
)
RATING_SCORES = tuple(str(s) for s in range(1, 11))


@dataclass(frozen=True)
class RatingPrompt:
    """The d-RLAIF question: the TL;DR preamble, the instruction, the post and one summary; the
    assistant turn starts with `Rating: ` and the probabilities of `1`..`10` are read there."""

    preamble: str = SUMMARIZE_PREAMBLE
    assistant_prefix: str = "Rating: "

    @property
    def prompt_id(self) -> str:
        return "summarize-rating"

    def request(self, text: str, summary: str) -> JudgeRequest:
        user = f"{self.preamble}\n\n{RATING_INSTRUCTION}\n\nText - {text}\n\nSummary - {summary}"
        # The whole user text is one `item`: hf_local then encodes it in one piece, with the tokens
        # a plain encoding of the prompt gives, as d-RLAIF always has.
        return JudgeRequest(
            system=SYSTEM,
            shared="",
            group="",
            item=user,
            assistant_prefix=self.assistant_prefix,
            cue="",
            answer_instruction="Answer with only the number of your rating, from 1 to 10.",
            max_rationale_tokens=0,
            choices=RATING_SCORES,
            undecided_outside_top_k=False,
        )
