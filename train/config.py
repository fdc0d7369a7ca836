"""The training configuration: one typed object per stage, from YAML or TOML, with ``--set key=value`` overrides.

Defaults are the official recipe (docs/training.md; the spec's §4): stage 1 ``align`` (xlmr-mistral_aligment*.yaml)
and stage 2 ``finetune`` (the released phase-2 run). ``default_config_text(stage)`` prints them with every field's
documentation, as ``lusifer-rag train --print-config align|finetune`` shows.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from lusifer_rag.errors import ConfigError

STAGES = ("align", "finetune")
PRECISIONS = ("auto", "bf16", "fp32")
STRATEGIES = ("auto", "none", "ddp", "fsdp")


def doc(default: Any = None, text: str = "", *, factory=None):
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class ModelConfig:
    universal_learner: str = doc("FacebookAI/xlm-roberta-large", "Universal learner: an HF model dir or hub id (XLM-R, multilingual-e5 BERT, mT5). Stage 2: a stage-1 output's merged learner is used when init_from is set.")
    universal_learner_backbone: str = doc("xlm-r", "'xlm-r', 'bert' (XLM-R vocabulary BERT: multilingual-e5) or 'mt5'.")
    target: str = doc("mistralai/Mistral-7B-Instruct-v0.3", "Target model: an HF dir or hub id of a decoder LLM (mistral, llama, qwen2) or of a BERT embedding model.")
    target_backbone: str = doc("mistral", "'mistral', 'llama', 'qwen2' or 'bert' (an English encoder embedding model, e.g. all-MiniLM-L6-v2).")
    connection_type: str = doc("ff", "'ff' (the official connector on the learner's last layer), 'fusion-global' or 'fusion-transformer' (multi-layer fusion, arXiv 2508.09091).")
    num_added_tokens: int = doc(0, "Learnable tokens appended after each text (decoder targets only); the released model has 0.")
    init_from: str | None = doc(None, "Stage 2: the output directory of stage 1 (its merged universal learner and its connector seed this stage).")
    random_init: bool = doc(False, "Build every weight at random from the configs (tests, smoke runs) instead of reading the base weights.")
    lora_r: int = doc(16, "LoRA rank (both models).")
    lora_alpha: int = doc(32, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = doc(0.1, "Dropout on the LoRA inputs.")
    hidden_dropout: float | None = doc(None, "Hidden dropout of the learner (and of a BERT target); null = the model config's hidden_dropout_prob (XLM-R: 0.1).")
    learner_lora_targets: list[str] | None = doc(None, "Official module names to put LoRA on in the learner (query, key, value, dense); null = all of them.")
    target_lora_targets: list[str] | None = doc(None, "Stage 2: module names in the target (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; query, key, value, dense for BERT); null = all.")
    max_length: int = doc(512, "Most learner tokens per text (templates included; cut from the right).")
    target_max_length: int = doc(512, "Stage 1: most target tokens.")


@dataclass
class DataConfig:
    train: list[str] = doc(factory=list, text="Training JSONL files (stage 1: {text} or {instruction, input, target} or {query, positive}; stage 2: {query, positive, negative, dataset?, cluster?, instruction?}).")
    reconstruction_instruction: str = doc("Please reconstruct the following text.", "Stage 1: instruction of the reconstruction task.")
    question_instruction: str = doc("Please write a question based on this passage.", "Stage 1: instruction that turns a passage into its question.")
    retrieval_instruction: str = doc("Given a question, retrieve passages that answer the question.", "The retrieval instruction (stage-1 query->positive task; stage-2 examples without their own).")
    mix_query_to_positive: float = doc(0.30, "Stage 1, {query, positive} records: share of query->positive examples.")
    mix_reconstruct_positive: float = doc(0.28, "... share reconstructing the positive.")
    mix_positive_to_question: float = doc(0.42, "... share writing the question from the positive.")
    target_attention: str = doc("prefix-lm", "Stage 1, decoder targets: 'prefix-lm' (learner slots bidirectional, target causal: no position sees the token it predicts) or 'bidirectional' (the official pattern, which leaks the targets when mask_probability is 0).")
    mask_probability: float = doc(0.0, "Stage 1: each target token independently loses its attention (prob p) and/or is replaced by <unk> (prob p); labels stay.")
    positives: int = doc(1, "Stage 2: positives per example (cycled when a record has fewer).")
    negatives: int = doc(16, "Stage 2: hard negatives per example (cycled; 0 = in-batch negatives only).")
    cluster_order: bool = doc(True, "Stage 2: batches drawn in cluster order, so in-batch negatives share a topic.")
    no_cross_batch: list[str] = doc(factory=list, text="Stage 2: datasets whose examples use only their own query/positives/negatives (classification, clustering).")
    max_records_per_dataset: int | None = doc(None, "Most records read per dataset (the official runs: 10k–500k).")


@dataclass
class OptimConfig:
    lr: float = doc(5e-6, "Peak learning rate (official: stage 1 2e-4 reconstruction / 1.5e-4 completion; stage 2 phase 2 5e-6).")
    min_lr: float = doc(1e-7, "Learning rate at the end of the cosine.")
    weight_decay: float = doc(0.0, "AdamW weight decay.")
    betas: list[float] = doc(factory=lambda: [0.9, 0.999], text="AdamW betas.")
    warmup_steps: int | None = doc(None, "Warm-up steps; null = min(10% of an epoch, 500) as the official configs.")
    max_steps: int | None = doc(None, "Stop after this many optimizer steps (null: epochs decide).")
    epochs: int = doc(1, "Passes over the data.")
    restart_every_epoch: bool = doc(False, "Cosine restarts at every epoch (the official stage-1 schedule).")
    grad_clip: float | None = doc(None, "Clip the gradient norm to this value (null: no clipping, as the official runs).")


@dataclass
class TrainConfig:
    stage: str = doc("finetune", "'align' (stage 1) or 'finetune' (stage 2).")
    output_dir: str = doc("lusifer-out", "Where checkpoints, metrics and the final model go.")
    model: ModelConfig = doc(factory=ModelConfig, text="")
    data: DataConfig = doc(factory=DataConfig, text="")
    optim: OptimConfig = doc(factory=OptimConfig, text="")
    global_batch_size: int = doc(16, "Examples per optimizer step over all processes (official: stage 1 256, stage 2 phase 2 16).")
    micro_batch_size: int = doc(16, "Stage 1: examples per process per forward (gradient accumulation makes up the rest).")
    gc_chunk_size: int = doc(1, "Stage 2: examples per GradCache chunk (memory); the loss always sees the whole global batch.")
    temperature: float = doc(0.05, "Stage 2: NT-Xent temperature.")
    miner_epsilon: float | None = doc(0.25, "Stage 2: MultiSimilarity miner margin (null: every pair).")
    seed: int = doc(888, "Seed of everything (data order, initialisation, dropout).")
    precision: str = doc("auto", "'auto' (bf16 autocast on CUDA, fp32 on CPU), 'bf16' or 'fp32'.")
    strategy: str = doc("auto", "Parallelism under torchrun: 'auto' (FSDP2 on CUDA, DDP on CPU), 'fsdp', 'ddp', 'none'.")
    activation_checkpointing: bool | None = doc(None, "Recompute each layer in backward (null: on with CUDA).")
    log_every: int = doc(1, "Steps between metrics records (metrics.jsonl, TensorBoard, the progress bar).")
    save_every: int = doc(100, "Steps between resumable checkpoints (model, optimizer, scheduler, RNG, data position).")
    keep_checkpoints: int = doc(2, "Resumable checkpoints kept (the newest).")
    eval_dir: str | None = doc(None, "A BEIR directory evaluated every eval_every steps (its dev split by default).")
    eval_split: str = doc("dev", "Split of eval_dir (never the test split by default).")
    eval_every: int = doc(0, "Steps between evaluations (0: none).")
    eval_metric: str = doc("ndcg@10", "Metric that picks the best checkpoint.")

    # ---- validation --------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(key: str, value: Any, allowed: Any) -> ConfigError:
            return ConfigError(f"train config {key}={value!r} is not valid; allowed: {allowed}")

        from lusifer_rag.embedder.lusifer.config import CONNECTION_TYPES, SUPPORTED_LLM, SUPPORTED_UL

        m = self.model
        for key, value, allowed in (("stage", self.stage, STAGES), ("precision", self.precision, PRECISIONS),
                                    ("strategy", self.strategy, STRATEGIES),
                                    ("model.universal_learner_backbone", m.universal_learner_backbone, SUPPORTED_UL),
                                    ("model.target_backbone", m.target_backbone, SUPPORTED_LLM),
                                    ("model.connection_type", m.connection_type, CONNECTION_TYPES)):
            if value not in allowed:
                raise bad(key, value, list(allowed))
        for key, value, low in (("global_batch_size", self.global_batch_size, 1), ("micro_batch_size", self.micro_batch_size, 1),
                                ("gc_chunk_size", self.gc_chunk_size, 1), ("model.lora_r", m.lora_r, 1),
                                ("model.max_length", m.max_length, 8), ("save_every", self.save_every, 1),
                                ("log_every", self.log_every, 1), ("optim.epochs", self.optim.epochs, 1),
                                ("data.positives", self.data.positives, 1), ("data.negatives", self.data.negatives, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise bad(key, value, f"an integer >= {low}")
        if self.data.target_attention not in ("prefix-lm", "bidirectional"):
            raise bad("data.target_attention", self.data.target_attention, ["prefix-lm", "bidirectional"])
        if not 0.0 <= self.data.mask_probability < 1.0:
            raise bad("data.mask_probability", self.data.mask_probability, "a probability in [0, 1)")
        mix = (self.data.mix_query_to_positive, self.data.mix_reconstruct_positive, self.data.mix_positive_to_question)
        if min(mix) < 0 or abs(sum(mix) - 1.0) > 1e-6:
            raise bad("data.mix_*", mix, "three non-negative shares adding up to 1")
        if not self.optim.lr > 0 or self.optim.min_lr < 0 or self.optim.min_lr > self.optim.lr:
            raise bad("optim.lr/min_lr", (self.optim.lr, self.optim.min_lr), "0 <= min_lr <= lr, lr > 0")
        if self.temperature <= 0:
            raise bad("temperature", self.temperature, "a positive number")

    # ---- I/O ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> "TrainConfig":
        return _build(cls, raw, source, "")


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'the config'} must be a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {[prefix + k for k in unknown]}; known under "
                          f"{prefix.rstrip('.') or 'the top level'}: {sorted(known)}")
    values = {}
    for name, value in raw.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            values[name] = _build(typ, value, source, f"{prefix}{name}.")
        else:
            values[name] = _check_type(value, typ, f"{prefix}{name}", source)
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{source}: {e}") from None


def _check_type(value: Any, typ: Any, key: str, source: str) -> Any:
    text = str(typ)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{source}: {key} may not be null")
    ok = True
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int or text.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float or text.startswith("float"):
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif typ is str or text.startswith("str"):
        ok = isinstance(value, str)
    elif text.startswith("list") or "list[" in text:
        ok = isinstance(value, list)
    elif "bool" in text:
        ok = isinstance(value, bool)
    if not ok:
        raise ConfigError(f"{source}: {key}={value!r} should be {text.replace('typing.', '')}")
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) file as a dict; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
            return data or {}
        if path.suffix == ".json":
            return json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise ConfigError(f"training config {path}: cannot parse it ({e})") from None
    except Exception as e:  # yaml.YAMLError
        raise ConfigError(f"training config {path}: cannot parse it ({e})") from None
    raise ConfigError(f"training config {path}: use a .yaml, .yml, .toml or .json file")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.sub=value`` strings onto a nested dict; values are read as YAML (numbers, booleans, lists, null)."""
    import yaml

    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. optim.lr=1e-4)")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: cannot read the value ({e})") from None
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    raw = dict(base or {})
    if path is not None:
        raw = _merge(raw, read_config_file(path))
    raw = apply_overrides(raw, overrides or [])
    return TrainConfig.from_dict(raw, str(path or "the training config"))


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---- defaults of the two stages ---------------------------------------------------------------------------
def stage_defaults(stage: str) -> dict[str, Any]:
    """The official hyper-parameters of a stage, as overrides of the dataclass defaults (which are stage 2's)."""
    if stage == "align":
        return {"stage": "align", "global_batch_size": 256, "micro_batch_size": 16,
                "optim": {"lr": 1.5e-4, "min_lr": 1e-6, "restart_every_epoch": True, "max_steps": 10000},
                "data": {"mask_probability": 0.5}}
    if stage == "finetune":
        return {"stage": "finetune", "global_batch_size": 16, "gc_chunk_size": 1,
                "optim": {"lr": 5e-6, "min_lr": 1e-7, "epochs": 1}, "data": {"positives": 1, "negatives": 16}}
    raise ConfigError(f"stage {stage!r} is not valid; allowed: {list(STAGES)}")


def default_config_text(stage: str) -> str:
    """A commented YAML config of ``stage`` with the official hyper-parameters."""
    cfg = TrainConfig.from_dict(stage_defaults(stage), f"{stage} defaults")
    lines = [f"# LUSIFER {'stage 1: alignment' if stage == 'align' else 'stage 2: representation fine-tuning'}",
             "# lusifer-rag train THIS_FILE [--set key=value ...]; every key is optional (these are the defaults)."]
    _emit(cfg, lines, 0)
    return "\n".join(lines) + "\n"


def _emit(obj: Any, lines: list[str], indent: int) -> None:
    import yaml

    pad = "  " * indent
    for f in fields(obj):
        value = getattr(obj, f.name)
        text = f.metadata.get("doc", "")
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            _emit(value, lines, indent + 1)
            continue
        if text:
            lines.append(f"{pad}# {text}")
        dumped = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
        dumped = dumped.removesuffix("\n...").removesuffix("...").strip()
        lines.append(f"{pad}{f.name}: {dumped}")
