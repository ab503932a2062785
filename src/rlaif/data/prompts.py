"""The TL;DR prompt format and OpenAI-style truncation of long posts to a token budget."""

from __future__ import annotations

import re

from transformers import PreTrainedTokenizerBase

PROMPT_RE = re.compile(
    r"^(?:SUBREDDIT: r/(?P<subreddit>[^\n]*)\n\n)?(?:TITLE: (?P<title>.*?)\n\n)?POST: (?P<post>.*)\n\nTL;DR:\s*$",
    re.DOTALL,
)
SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s)")


def format_prompt(post: str, subreddit: str = "", title: str = "") -> str:
    """`SUBREDDIT: r/{subreddit}\\n\\nTITLE: {title}\\n\\nPOST: {post}\\n\\nTL;DR:`, without the parts a source lacks."""
    parts = []
    if subreddit:
        parts.append(f"SUBREDDIT: r/{subreddit}")
    if title:
        parts.append(f"TITLE: {title}")
    parts.append(f"POST: {post}")
    return "\n\n".join(parts) + "\n\nTL;DR:"


def parse_prompt(prompt: str) -> dict[str, str] | None:
    """Inverse of format_prompt, for Hub sets that ship formatted prompts (trl-lib/tldr)."""
    match = PROMPT_RE.match(prompt.strip())
    if not match:
        return None
    return {k: (v or "").strip() for k, v in match.groupdict().items()}


def count_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def truncate_post(tokenizer: PreTrainedTokenizerBase, post: str, subreddit: str, title: str, max_tokens: int) -> str:
    """The longest prefix of `post` whose prompt fits `max_tokens`, cut at a newline as OpenAI's
    preprocessing does (Stiennon et al. 2020, `truncate_text: "\\n"`), else at a sentence end,
    else at a word boundary; never mid-word. A newline cut is taken only when it keeps at least half
    of what a word cut would, so one early newline does not throw the post away."""

    def fits(n_chars: int) -> bool:
        return count_tokens(tokenizer, format_prompt(post[:n_chars].rstrip(), subreddit, title)) <= max_tokens

    if fits(len(post)):
        return post
    word_cuts = [m.start() for m in re.finditer(r"\s", post)]
    best_word = _longest_fitting(word_cuts, fits)
    if best_word == 0:
        raise ValueError(f"prompt budget of {max_tokens} tokens leaves no room for even one word of the post")
    for cuts in ([m.start() for m in re.finditer("\n", post)], [m.end() for m in SENTENCE_END.finditer(post)]):
        best = _longest_fitting(cuts, fits)
        if best >= best_word / 2:
            return post[:best].rstrip()
    return post[:best_word].rstrip()


def _longest_fitting(cuts: list[int], fits) -> int:
    """Binary search over sorted cut positions (token count grows with the prefix); 0 if none fit."""
    lo, hi, best = 0, len(cuts) - 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if cuts[mid] > 0 and fits(cuts[mid]):
            best, lo = cuts[mid], mid + 1
        else:
            hi = mid - 1
    return best


def fit_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str, max_tokens: int) -> str:
    """A TL;DR prompt over the token budget rebuilt with its post cut as data.max_prompt_tokens cuts
    it; any other prompt (a dialogue) is returned unchanged, for RewardConfig.max_length to cut."""
    parsed = parse_prompt(prompt)
    if parsed is None or count_tokens(tokenizer, prompt) <= max_tokens:
        return prompt
    return build_prompt(tokenizer, parsed, max_tokens)


def build_prompt(tokenizer: PreTrainedTokenizerBase, record: dict, max_tokens: int) -> str:
    """The formatted prompt of a post record, truncated to the budget."""
    post = truncate_post(tokenizer, record["post"], record.get("subreddit", ""), record.get("title", ""), max_tokens)
    return format_prompt(post, record.get("subreddit", ""), record.get("title", ""))
