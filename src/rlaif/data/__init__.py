"""Data: readers with precise errors, TL;DR post records, prompt formatting and truncation."""

from rlaif.data.prompts import build_prompt, fit_prompt, format_prompt, parse_prompt, truncate_post
from rlaif.data.readers import DataError, read_rows
from rlaif.data.splits import eval_records, policy_posts, pool_split, prompt_pool, prompt_records
from rlaif.data.tldr import LoadReport, load_posts, post_record

__all__ = [
    "eval_records",
    "policy_posts",
    "pool_split",
    "prompt_pool",
    "prompt_records",
    "DataError",
    "LoadReport",
    "build_prompt",
    "fit_prompt",
    "format_prompt",
    "load_posts",
    "parse_prompt",
    "post_record",
    "read_rows",
    "truncate_post",
]
