"""Config loading: presets parse, overrides apply, and every kind of bad config names its field."""

from __future__ import annotations

import pytest

from rlaif.cli import build_parser
from rlaif.config import ConfigError, PipelineConfig, describe, load_config
from tests.conftest import REPO, needs_shared_data


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_paper_preset_parses_with_published_hyperparameters():
    cfg = load_config(REPO / "configs" / "paper.yaml")
    assert cfg.sft.model == "gpt2-large"
    assert cfg.sft.learning_rate == 5e-5 and cfg.sft.num_train_epochs == 1
    assert cfg.sft.per_device_batch_size * 4 * cfg.sft.gradient_accumulation_steps == 64  # 4 GPUs
    assert cfg.data.sft[0].path == "trl-lib/tldr" and not cfg.data.sft[0].is_local


@needs_shared_data
@pytest.mark.parametrize("preset", ["tiny", "demo"])
def test_runnable_presets_parse(preset):
    cfg = load_config(REPO / "configs" / f"{preset}.yaml")
    assert cfg.name == preset and str(cfg.run_dir) == f"runs/{preset}"


def test_overrides_are_typed_and_nested(tmp_path):
    path = write(tmp_path, "sft:\n  model: tiny-random\n")
    cfg = load_config(path, ["sft.learning_rate=1e-4", "sft.lora.enabled=true", "seed=7", "output_dir=/tmp/x"])
    assert cfg.sft.learning_rate == 1e-4 and cfg.sft.lora.enabled is True and cfg.seed == 7
    assert str(cfg.run_dir) == "/tmp/x" and cfg.name == "cfg"  # name defaults to the file's stem


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 5e-5 as a string; a learning rate written that way must still work.
    cfg = load_config(write(tmp_path, "sft:\n  learning_rate: 5e-5\n"))
    assert cfg.sft.learning_rate == 5e-5


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("sft:\n  learnign_rate: 0.1\n", [], "unknown config key sft.learnign_rate"),
        ("sft:\n  max_steps: ten\n", [], "sft.max_steps: expected an integer, got str 'ten'"),
        ("sft:\n  lora:\n    enabled: 1\n", [], "sft.lora.enabled: expected true or false"),
        ("sft:\n  dtype: float64\n", [], "sft.dtype: must be one of 'float32', 'bfloat16', 'float16'"),
        (
            "data:\n  sft:\n    - path: missing/posts.jsonl\n",
            [],
            "data.sft.0.path: file not found: missing/posts.jsonl",
        ),
        ("data:\n  sft:\n    - {path: ''}\n", [], "data.sft.0.path: empty"),
        ("data:\n  sft: posts.jsonl\n", [], "data.sft: expected a list"),
        ("sft:\n  model: ./no/such/folder\n", [], "sft.model: model folder not found"),
        ("sft:\n  validation_fraction: 1.5\n", [], "sft.validation_fraction: must be in (0, 1)"),
        ("- a\n- b\n", [], "top level must be a mapping"),
        ("sft: {model: [\n", [], "not valid YAML"),
        ("{}\n", ["sft.learning_rate"], "--set 'sft.learning_rate': expected key.sub=value"),
        ("{}\n", ["sft.model.name=x"], "sft.model: expected a string"),
        (
            "data:\n  sft:\n    - {path: a.jsonl}\n",
            ["data.sft.3.path=x"],
            "--set data.sft.3.path: '3' is not an index of a list of 1",
        ),
    ],
)
def test_bad_config_names_the_field(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), overrides)
    assert message in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_help_lists_every_field_with_its_docstring(capsys):
    lines = "\n".join(describe(PipelineConfig))
    assert "sft.learning_rate (float = 5e-05): Peak learning rate (AdamW)." in lines
    assert "data.max_prompt_tokens (int = 512): Token budget of a formatted prompt." in lines
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sft", "--help"])
    out = capsys.readouterr().out
    assert "sft.lora.r (int = 16): Adapter rank." in out and "data.sft" in out


@pytest.mark.parametrize(
    "text, message",
    [
        ("reward:\n  eval_min_confidence: 8\n", "reward.eval_min_confidence is now reward.eval_min_strength"),
        (
            "label:\n  alignment_min_confidence: 8\n",
            "label.alignment_min_confidence is now label.alignment_min_strength",
        ),
        ("reward:\n  min_strength: 8\n", "reward.min_strength: a strength |confidence - 5| is 0-4"),
        ("human:\n  heldout_fraction: 0\n", "human.heldout_fraction: must be in (0, 1]"),
        ("human:\n  high_confidence_strength: 5\n", "human.high_confidence_strength: a strength"),
        ("dpo:\n  min_confidence: 8\n", "dpo.min_confidence is now dpo.min_strength"),
    ],
)
def test_confidence_filters_take_a_strength_and_old_keys_say_what_changed(tmp_path, text, message):
    """[H01] summarize_from_feedback's confidence is a 9-point preference scale: a filter on it is a
    strength |confidence - 5|, and a config written for the old one-sided reading stops with the news."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)
    if "is now" in message:
        assert "human.one_sided_min_confidence" in str(err.value)


def test_labeler_rows_must_include_the_shared_rows(tmp_path):
    with pytest.raises(ConfigError, match="human.labeler_max_heldout: 8 must be at least human.max_heldout"):
        load_config(write(tmp_path, "human:\n  max_heldout: 16\n  labeler_max_heldout: 8\n"))


@needs_shared_data
def test_demo_labeler_on_200_held_out_rows_starts_with_the_shared_64():
    """The README's 200-row labeler figure: `--set human.labeler_max_heldout=200` on the demo."""
    from rlaif.data.splits import human_split

    split = human_split(load_config(REPO / "configs" / "demo.yaml", ["human.labeler_max_heldout=200"]))
    assert len(split.heldout) == 64 and len(split.labeler_heldout) == 200
    assert split.labeler_heldout[:64] == split.heldout
    assert {r["post_id"] for r in split.labeler_heldout} <= split.heldout_posts


@needs_shared_data
def test_rm_tldr_preset_trains_on_700_and_measures_on_250_comparisons_of_other_posts():
    from rlaif.data.splits import human_split

    cfg = load_config(REPO / "configs" / "rm-tldr.yaml")
    split = human_split(cfg)
    assert len(split.train) >= 700 and len(split.heldout) >= 250
    assert not {r["post_id"] for r in split.train} & {r["post_id"] for r in split.heldout}
    assert cfg.reward.source == "human" and not cfg.reward.comparisons


def test_methods_preset_reuses_every_demo_stage():
    """configs/methods.yaml runs into the demo's folder and copies its sections: every stage the demo
    runs has the same section there (so a finished demo run is reused), except evaluate, which
    compares the methods too."""
    from rlaif import pipeline
    from rlaif.config.base import section_hash

    demo, methods = load_config(REPO / "configs" / "demo.yaml"), load_config(REPO / "configs" / "methods.yaml")
    assert methods.run_dir == demo.run_dir and methods.seed == demo.seed
    assert section_hash(methods.data) == section_hash(demo.data)
    demo_stages = pipeline.enabled(demo)
    for stage in demo_stages:
        if stage.name != "evaluate":
            assert section_hash(getattr(methods, stage.section)) == section_hash(getattr(demo, stage.section)), (
                stage.name
            )
    added = {s.name for s in pipeline.enabled(methods)} - {s.name for s in demo_stages}
    assert added == {"rloo", "rloo_rlhf", "grpo", "grpo_rlhf", "dpo", "dpo_rlhf", "oaif", "oaif_rlhf",
                     "best_of_n", "best_of_n_rlhf", "frontier"}  # fmt: skip
