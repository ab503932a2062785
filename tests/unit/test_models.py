"""Model loading: embedded names resolve offline, pad differs from EOS, bad names fail clearly."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from rlaif.models import ModelLoadError, ensure_pad_token, load_causal_lm, load_tokenizer, resolve_model


def test_tiny_random_has_distinct_pad_and_loads():
    tokenizer = load_tokenizer("tiny-random")
    assert tokenizer.pad_token_id != tokenizer.eos_token_id and tokenizer.eos_token == "<|im_end|>"
    model = load_causal_lm("tiny-random", tokenizer)
    assert model.config.num_hidden_layers == 2 and model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert isinstance(model, type(AutoModelForCausalLM.from_pretrained(resolve_model("tiny-random"))))


def test_pad_token_is_added_when_only_eos_exists():
    # GPT-2's tokenizer has one special token for bos, eos and unk: a new [PAD] must be added.
    tokenizer = load_tokenizer("tiny-random")
    tokenizer.pad_token = tokenizer.unk_token = tokenizer.eos_token
    size = len(tokenizer)
    ensure_pad_token(tokenizer)
    assert tokenizer.pad_token == "[PAD]" and len(tokenizer) == size + 1
    model = load_causal_lm("tiny-random", tokenizer)
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer)


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json"):
        resolve_model(str(tmp_path))


def test_unknown_hub_model_offline_fails_clearly():
    tokenizer = load_tokenizer("tiny-random")
    with pytest.raises(ModelLoadError, match="cannot load model 'no-such-org/no-such-model'"):
        load_causal_lm("no-such-org/no-such-model", tokenizer)
