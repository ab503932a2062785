"""Judge prompts: both orders, styles, tasks, exemplars, and the chat rendering of hf_local."""

from __future__ import annotations

import json

import pytest

from rlaif.config import LabelerSettings
from rlaif.data import DataError
from rlaif.labelers import make_labeler
from rlaif.labelers.prompts import judge_text_from_prompt, make_prompt

FEWSHOT = "configs/fewshot/summarize_2shot.jsonl"


def test_both_orders_swap_the_candidates_and_share_everything_else():
    ab, ba = make_prompt("summarize", "cot", 48).pair_requests("POST: my cat", "cat sleeps", "dog barks")
    assert ab.item.startswith("Summary 1 - cat sleeps\nSummary 2 - dog barks\n\n")
    assert ba.item.startswith("Summary 1 - dog barks\nSummary 2 - cat sleeps\n\n")
    assert (ab.system, ab.shared, ab.group) == (ba.system, ba.shared, ba.group)
    assert ab.group == "Text - POST: my cat\n"
    assert ab.user == ab.shared + ab.group + ab.item
    for word in ("Coherence", "Accuracy", "Coverage", "Overall quality"):
        assert word in ab.shared
    # 0-shot CoT: the assistant starts a rationale; stage 2 appends the answer cue
    assert ab.assistant_prefix == "Rationale:" and ab.cue == "\nPreferred Summary=" and ab.max_rationale_tokens == 48
    assert ab.item.endswith("explain which one is better.") and ab.choices == ("1", "2")


def test_base_style_reads_the_answer_at_once():
    req = make_prompt("summarize", "base", 48).request("text", "x", "y")
    assert req.assistant_prefix == "Preferred Summary=" and req.max_rationale_tokens == 0
    assert req.item.endswith("Answer with 1 or 2.")


def test_dialogue_task_has_its_own_preamble_and_labels():
    req = make_prompt("dialogue", "cot", 32).request("Human: hi", "Hello!", "Go away.")
    assert "harmless" in req.shared and req.group == "Conversation - Human: hi\n"
    assert req.item.startswith("Response 1 - Hello!\nResponse 2 - Go away.") and req.cue == "\nPreferred Response="
    assert make_prompt("dialogue", "cot", 32).prompt_id == "dialogue-cot-0shot"


def test_fewshot_exemplars_come_before_the_pair():
    prompt = make_prompt("summarize", "cot", 48, FEWSHOT)
    req = prompt.request("POST: new one", "s1", "s2")
    assert prompt.prompt_id == "summarize-cot-2shot"
    assert req.shared.count("Rationale: ") == 2 and "Preferred Summary=2\n\nExample 2:" in req.shared
    assert req.shared.endswith("Now the one to judge:\n")
    base = make_prompt("summarize", "base", 48, FEWSHOT).request("POST: new one", "s1", "s2")
    assert "Rationale" not in base.shared and base.shared.count("Preferred Summary=") == 2


def test_exemplar_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "ex.jsonl"
    path.write_text(json.dumps({"text": "t", "summary_1": "a", "summary_2": "b", "preferred": 1}) + "\n")
    make_prompt("summarize", "base", 8, str(path))  # no rationale needed without CoT
    with pytest.raises(DataError, match=r"ex.jsonl:1: field 'rationale' is missing"):
        make_prompt("summarize", "cot", 8, str(path))
    path.write_text(json.dumps({"text": "t", "summary_1": "a", "summary_2": "b", "preferred": 3}) + "\n")
    with pytest.raises(DataError, match=r"ex.jsonl:1: field 'preferred' must be 1 or 2"):
        make_prompt("summarize", "base", 8, str(path))


def test_judge_text_drops_the_tldr_cue():
    assert (
        judge_text_from_prompt("SUBREDDIT: r/a\n\nTITLE: t\n\nPOST: p\n\nTL;DR:")
        == "SUBREDDIT: r/a\n\nTITLE: t\n\nPOST: p"
    )


def test_hf_local_renders_the_chat_template_and_continues_the_assistant_turn():
    labeler = make_labeler(LabelerSettings(model="tiny-random"))
    req = make_prompt("summarize", "cot", 8).request("POST: p", "x", "y")
    prefix, group, item, cue = labeler.segments(req)
    text = prefix + labeler.tokenizer.decode(group + item)
    messages = [{"role": "system", "content": req.system}, {"role": "user", "content": req.user}]
    expected = (
        labeler.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + "Rationale:"
    )
    assert text == expected
    assert labeler.tokenizer.decode(cue) == "\nPreferred Summary="
    assert labeler.choice_paths(("1", "2")) == [
        (0, (labeler.tokenizer.convert_tokens_to_ids("1"),)),
        (1, (labeler.tokenizer.convert_tokens_to_ids("2"),)),
    ]
