"""Judge prompts from a template file [L09]: the exact bytes each backend sends, for a given pair
and order; the defaults, which do not steer on length; errors that name the file and field; the
template's hash in prompt_id and its file in the stage fingerprints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rlaif.config import ConfigError, EvaluateConfig, LabelConfig, LabelerSettings, OpenAIApiSettings, RLConfig
from rlaif.labelers import make_labeler
from rlaif.labelers.chat import answer_text
from rlaif.labelers.prompts import eval_prompt, label_prompt, load_template, make_prompt, rating_prompt
from tests.labelers.fake_openai_server import FakeOpenAIServer
from tests.labelers.test_vllm_offline import FakeLLM, SamplingParams

# A template as a user would write it: every part its own, literal braces doubled, a separator of its own.
TEMPLATE = r"""
system: "You judge summaries."
user: |-
  Post: {text}
  First: {summary_1}
  Second: {summary_2}
  Which is better? {{1 or 2}}
assistant: "Thoughts:"
answer: "Thoughts: {rationale}\nBest="
answer_request: "Reply 1 or 2."
separator: "\n---\n"
"""
SYSTEM = "You judge summaries."
# the pair (a = alpha, b = beta) in order ba: b is shown first
USER_BA = "Post: POST: p\nFirst: beta\nSecond: alpha\nWhich is better? {1 or 2}"


@pytest.fixture
def template_file(tmp_path):
    path = tmp_path / "judge.yaml"
    path.write_text(TEMPLATE)
    return str(path)


def order_ba(prompt):
    return prompt.pair_requests("POST: p", "alpha", "beta")[1]


def test_template_renders_the_same_bytes_on_the_local_backend(template_file):
    labeler = make_labeler(LabelerSettings(model="tiny-random"))
    req = order_ba(label_prompt(LabelConfig(prompt_file=template_file)))
    chat = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{USER_BA}<|im_end|>\n<|im_start|>assistant\n"
    assert labeler.render(req) == chat + "Thoughts:"
    # the ids the model reads are those of that text, encoded whole [L10]
    assert labeler.encode(req).ids == labeler.tokenizer(chat + "Thoughts:", add_special_tokens=False).input_ids
    assert answer_text(labeler.tokenizer, req, " It is.\n") == chat + "Thoughts: It is.\nBest="
    assert req.choices == ("1", "2") and req.answer_instruction == "Reply 1 or 2."


@pytest.mark.parametrize("endpoint,continue_final", [("completions", False), ("chat", True), ("chat", False)])
def test_template_renders_the_same_bytes_over_http(template_file, endpoint, continue_final):
    prompt = label_prompt(LabelConfig(prompt_file=template_file))
    with FakeOpenAIServer() as server:
        api = OpenAIApiSettings(base_url=server.base_url, endpoint=endpoint, continue_final_message=continue_final)
        labeler = make_labeler(LabelerSettings(backend="openai_api", model="m", max_rationale_tokens=8, api=api))
        (result,) = labeler.judge([dataclasses.replace(order_ba(prompt), max_rationale_tokens=8)])
    assert result.error is None and result.rationale == "Summary 2 looks more accurate."
    stage1, stage2 = (q["body"] for q in server.requests)
    answer = "Thoughts: Summary 2 looks more accurate.\nBest="  # the fake server's rationale, stripped
    if endpoint == "completions":
        plain = f"{SYSTEM}\n---\n{USER_BA}\n---\n"
        assert stage1["prompt"] == plain + "Thoughts:" and stage2["prompt"] == plain + answer
    elif continue_final:
        head = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER_BA}]
        assert stage1["messages"] == head + [{"role": "assistant", "content": "Thoughts:"}]
        assert stage2["messages"] == head + [{"role": "assistant", "content": answer}]
    else:  # a server that cannot continue a turn: the rationale is the reply, the answer asked for anew
        head = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER_BA}]
        assert stage1["messages"] == head
        assert stage2["messages"] == head + [
            {"role": "assistant", "content": "Summary 2 looks more accurate."},
            {"role": "user", "content": "Reply 1 or 2."},
        ]


def test_template_renders_the_same_bytes_on_vllm(template_file):
    engine = FakeLLM()
    labeler = make_labeler(
        LabelerSettings(backend="vllm_offline", model="tiny-random", max_rationale_tokens=8),
        engine=engine,
        sampling_params=SamplingParams,
    )
    req = dataclasses.replace(order_ba(label_prompt(LabelConfig(prompt_file=template_file))), max_rationale_tokens=8)
    (result,) = labeler.judge([req])
    chat = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{USER_BA}<|im_end|>\n<|im_start|>assistant\n"
    tokenizer = engine.tokenizer
    (stage1, params1), (stage2, _) = engine.calls
    assert stage1 == [{"prompt_token_ids": tokenizer(chat + "Thoughts:", add_special_tokens=False).input_ids}]
    answer = chat + "Thoughts: The second is better.\nBest="  # the stand-in's rationale, stripped
    assert stage2 == [{"prompt_token_ids": tokenizer(answer, add_special_tokens=False).input_ids}]
    assert params1.stop == ["Best="] and result.rationale == "The second is better."


def test_a_template_without_answer_reads_the_choices_after_the_assistant_text(tmp_path):
    """TRL's OpenAIPairwiseJudge's shape: one user turn, the answer read at once, choices 0 and 1."""
    path = tmp_path / "trl.yaml"
    path.write_text('user: "Q {text} A {summary_1} B {summary_2} {{json}}"\nassistant: ""\nchoices: ["0", "1"]\n')
    prompt = label_prompt(LabelConfig(prompt_file=str(path), prompt_style="base"))
    ab = prompt.pair_requests("t", "x", "y")[0]
    assert ab.system is None and ab.user == "Q t A x B y {json}" and ab.assistant_prefix == ""
    assert ab.choices == ("0", "1") and ab.max_rationale_tokens == 0


def test_default_prompts_do_not_steer_on_length_unless_asked():
    label = make_prompt("summarize", "cot", 8).request("POST: p", "x", "y")
    evaluation = eval_prompt(EvaluateConfig()).request("POST: p", "x", "y")
    rating = rating_prompt(RLConfig()).request("POST: p", "x")
    for req in (label, evaluation, rating):
        assert "longer" not in req.user and req.system is None  # Lee et al.'s structure: no system turn
    assert "position in which it is shown" in evaluation.user  # the order is not length
    steered = make_prompt("summarize", "cot", 8, discourage_length=True).request("POST: p", "x", "y")
    assert "Do not prefer a summary for being longer" in steered.user
    steered = eval_prompt(EvaluateConfig(judge_discourage_length=True)).request("POST: p", "x", "y")
    assert "Do not favour a summary for being longer" in steered.user
    steered = rating_prompt(RLConfig(direct_discourage_length=True)).request("POST: p", "x")
    assert "Do not prefer a summary for being longer" in steered.user


def test_prompt_id_carries_a_hash_of_the_template_text(template_file, tmp_path):
    first = label_prompt(LabelConfig(prompt_file=template_file)).prompt_id
    assert first == label_prompt(LabelConfig(prompt_file=template_file)).prompt_id
    assert first.startswith("judge-") and len(first.rsplit("-", 1)[1]) == 12
    (tmp_path / "edited").mkdir()
    changed = tmp_path / "edited" / "judge.yaml"  # the same name, one byte more
    changed.write_text(TEMPLATE.replace("Best=", "Best ="))
    assert label_prompt(LabelConfig(prompt_file=str(changed))).prompt_id != first
    builtin = make_prompt("summarize", "cot", 8)
    assert builtin.prompt_id.startswith("summarize-cot-0shot-")
    assert make_prompt("summarize", "cot", 8, discourage_length=True).prompt_id != builtin.prompt_id
    record = label_prompt(LabelConfig(prompt_file=template_file)).record()
    assert record["prompt_id"] == first and record["user"].startswith("Post: {text}") and record["system"] == SYSTEM


@pytest.mark.parametrize(
    "text,message",
    [
        ('user: "{text} {summary_1}"\n', r"judge.yaml: field 'user' lacks the placeholder \{summary_2\}"),
        ('user: "{text} {summary_1} {summary_2} {prompt}"\n', r"field 'user': unknown placeholder \{prompt\}"),
        ('user: "{text} {text} {summary_1} {summary_2}"\n', r"field 'user' has \{text\} 2 times"),
        ('user: "{text} {summary_1} {summary_2}"\nanswer: "no slot"\n', r"field 'answer' lacks \{rationale\}"),
        ('user: "{text} {summary_1} {summary_2}"\nchoices: ["1"]\n', r"field 'choices': at least two"),
        ('user: "{text} {summary_1} {summary_2}"\ncolour: red\n', r"unknown field 'colour'"),
        ("- a list\n", r"judge.yaml: expected a mapping"),
    ],
)
def test_template_errors_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "judge.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_template(str(path), "pair")


def test_a_rating_template_has_its_own_placeholders(tmp_path):
    path = tmp_path / "rate.yaml"
    path.write_text('user: "Post: {text}\\nSummary: {summary}\\nScore 1-10."\nassistant: "Score: "\n')
    req = rating_prompt(RLConfig(direct_prompt_file=str(path))).request("t", "s")
    assert req.user == "Post: t\nSummary: s\nScore 1-10." and req.choices == tuple(str(s) for s in range(1, 11))
    path.write_text('user: "{text}"\n')
    with pytest.raises(ConfigError, match=r"lacks the placeholder \{summary\}"):
        load_template(str(path), "rating")


def test_template_files_are_inputs_of_the_stage_fingerprints(template_file, tmp_path):
    from rlaif import pipeline
    from rlaif.artifacts import dataset_fingerprint
    from rlaif.config import load_config

    rating_file = tmp_path / "rating.yaml"
    rating_file.write_text('user: "{text} / {summary}"\nassistant: "Score: "\n')
    cfg = load_config(
        "configs/tiny.yaml",
        [
            f"label.prompt_file={template_file}",
            f"evaluate.judge_prompt_file={template_file}",
            "evaluate.judge_style=cot",  # the file has an `answer`: a chain-of-thought prompt
            "rl.reward_source=direct",
            f"rl.direct_prompt_file={rating_file}",
            "oaif={arms: [rlaif]}",
        ],
    )
    checks = [("label", template_file), ("label_alignment", template_file), ("oaif", template_file)]
    checks += [("evaluate", template_file), ("rl", str(rating_file))]
    for name, path in checks:
        (source,) = [ds for ds in pipeline.stage(name).data_of(cfg) if ds.path == path]
        before = dataset_fingerprint(source)
        Path(path).write_text(Path(path).read_text() + "\n# edited\n")  # its content is hashed
        assert dataset_fingerprint(source) != before, name
    # the RLHF arm's PPO has no rating prompt
    assert str(rating_file) not in [ds.path for ds in pipeline.stage("rl_rlhf").data_of(cfg)]


def test_every_label_carries_the_template_hash_and_the_text_is_kept_beside_them(template_file, tmp_path):
    from rlaif.jsonl import AppendLog, read_jsonl
    from rlaif.labelers.annotate import annotate

    prompt = label_prompt(LabelConfig(prompt_file=template_file, prompt_style="cot"))
    rows = [{"id": f"p{i}", "prompt": f"POST: {i}", "summary_a": "a", "summary_b": "b"} for i in range(3)]
    with FakeOpenAIServer() as server:
        api = OpenAIApiSettings(base_url=server.base_url, endpoint="completions")
        labeler = make_labeler(LabelerSettings(backend="openai_api", model="m", max_rationale_tokens=8, api=api))
        with AppendLog(tmp_path / "labels.jsonl") as labels, AppendLog(tmp_path / "failures.jsonl") as failures:
            annotate(rows, lambda p: p["prompt"], labeler, prompt, labels, failures, "drop")
    assert {r["prompt_id"] for r in read_jsonl(tmp_path / "labels.jsonl")} == {prompt.prompt_id}
    (kept,) = read_jsonl(tmp_path / "prompts.jsonl")
    assert kept == prompt.record() and kept["answer"] == "Thoughts: {rationale}\nBest="
