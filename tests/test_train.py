"""LUSIFER training on tiny real models (random XLM-R and Mistral saved as HF dirs, the real XLM-R tokenizer):
the two stages against a hand-written official reference (HF modules + peft + pytorch-metric-learning),
GradCache against the full batch, checkpoints through ``lusifer:``, and bad configs/records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lusifer_rag.errors import ConfigError
from lusifer_rag.train.config import TrainConfig, default_config_text, load_config
from lusifer_rag.train.data import AlignExample, PairExample

DOCS = ["The os module provides a portable way of using operating system dependent functionality.",
        "The json module encodes and decodes JSON documents.",
        "Sockets are the endpoints of network connections.",
        "Threads run code concurrently within one process."]
QUERIES = ["operating system functions", "read and write JSON", "network endpoints", "concurrency in a process"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    from lusifer_rag.train.presets import _tiny_bases

    return _tiny_bases(tmp_path_factory.mktemp("bases"), seed=0)


def config(bases, stage: str, tmp: Path, **over) -> TrainConfig:
    learner, target = bases
    raw = {"stage": stage, "output_dir": str(tmp / stage), "seed": 0, "strategy": "none",
           "model": {"universal_learner": str(learner), "target": str(target), "max_length": 64,
                     "target_max_length": 64, "lora_dropout": 0.0},
           "global_batch_size": 4, "micro_batch_size": 2, "gc_chunk_size": 2,
           "data": {"train": [], "positives": 1, "negatives": 1}}
    for k, v in over.items():
        node = raw
        *path, last = k.split("__")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    return TrainConfig.from_dict(raw)


def built_model(cfg: TrainConfig):
    from lusifer_rag.train.model import build

    torch.manual_seed(0)
    built = build(cfg, torch.device("cpu"), torch.float32)
    with torch.no_grad():  # LoRA B starts at zero (peft's init): make the adapters matter
        gen = torch.Generator().manual_seed(1)
        for w in built.adapters.values():
            for b in w.lora_B:
                b.copy_(torch.randn(b.shape, generator=gen) * 0.05)
    return built


def official_reference(built, cfg: TrainConfig):
    """An official-layout module (peft-wrapped HF XLM-R and Mistral, connector, projection) holding exactly the
    weights of ``built`` (through the export's official key names)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, XLMRobertaModel

    from lusifer_rag.embedder.lusifer.checkpoint import Layout
    from lusifer_rag.train.export import official_state
    from lusifer_rag.train.model import layout_config
    from lusifer_reference import LLM_TARGETS, UL_TARGETS, OfficialLike

    src = built.sources
    ul = XLMRobertaModel.from_pretrained(src.learner, add_pooling_layer=False)
    enc = AutoModelForCausalLM.from_pretrained(src.target)
    lora = dict(r=cfg.model.lora_r, lora_alpha=cfg.model.lora_alpha, lora_dropout=0.0, bias="none")
    ul = get_peft_model(ul, LoraConfig(target_modules=UL_TARGETS, **lora), adapter_name="universal_learner_lora")
    if cfg.stage == "finetune":
        enc = get_peft_model(enc, LoraConfig(target_modules=LLM_TARGETS, task_type="CAUSAL_LM", **lora),
                             adapter_name="encoder_lora")
    ref = OfficialLike(ul, enc, src.learner_config.hidden_size, src.target_config.hidden_size, 0)
    layout = Layout(layout_config(cfg, src, lora=True), built.ul_shape, built.target_shape)
    ours = {n.removeprefix("core."): p for n, p in built.model.named_parameters() if n.startswith("core.")}
    state = official_state(ours, layout, cfg.model.lora_alpha / cfg.model.lora_r)
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not unexpected, unexpected[:5]
    assert not [k for k in missing if "lora" in k or "connection" in k or "projection" in k]
    return ref.eval(), layout


def grads_as_official(built, layout, cfg) -> dict[str, torch.Tensor]:
    from lusifer_rag.train.export import official_state

    state = {}
    for n, p in built.model.named_parameters():
        if n.startswith("core."):
            state[n.removeprefix("core.")] = p.grad if p.grad is not None else torch.zeros_like(p)
    return official_state(state, layout, cfg.model.lora_alpha / cfg.model.lora_r)


def trainable_grads(ref) -> dict[str, torch.Tensor]:
    """The reference's gradients of what the stage trains (LoRA, connector, projection; the rest is frozen)."""
    return {k: p.grad for k, p in ref.named_parameters() if p.grad is not None
            and ("lora_" in k or k.startswith(("connection_module.", "output_projection.")))}


@pytest.mark.parametrize("attention", ["bidirectional", "prefix-lm"])
def test_stage1_loss_and_gradients_equal_the_official_reference(bases, tmp_path, attention):
    from lusifer_rag.train.steps import AlignStep
    from lusifer_rag.train.tokenizers import learner_tokenizer, target_tokenizer

    cfg = config(bases, "align", tmp_path, data__target_attention=attention)
    built = built_model(cfg)
    ul_tok, tgt_tok = learner_tokenizer(cfg, built.sources), target_tokenizer(cfg, built.sources)
    step = AlignStep(cfg, ul_tok, tgt_tok, "xlm-r", built.target_shape, torch.device("cpu"))
    examples = [AlignExample(cfg.data.reconstruction_instruction, DOCS[0], ""),
                AlignExample("Please write a question based on this passage.", DOCS[1], QUERIES[1]),
                AlignExample(cfg.data.retrieval_instruction, QUERIES[2], DOCS[2])]
    tm = built.model.eval()
    loss, _ = step(tm, examples)
    loss.backward()

    ref, layout = official_reference(built, cfg)
    ours = grads_as_official(built, layout, cfg)
    total, count = 0.0, 0
    for e in examples:  # the official forward, each example alone (no padding inside its sequence)
        ids = ul_tok(f"<s>{e.instruction}.\n{e.source}</s>", add_special_tokens=False)["input_ids"]
        x = ref.universal_learner(input_ids=torch.tensor([ids])).last_hidden_state
        h = ref.connection_module.ff(x)  # (1, Lu, D)
        target = e.target or f"{e.instruction}.\n{e.source}"
        lm = torch.tensor([tgt_tok(f"<s>{target}</s>", add_special_tokens=False)["input_ids"]])
        emb = ref.encoder.get_input_embeddings()(lm)
        seq = torch.cat([emb[:, :1], h, emb[:, 1:]], dim=1)  # (1, T, D)
        labels = torch.cat([lm[:, :1], torch.full((1, h.shape[1]), -100), lm[:, 1:]], dim=1)
        t = seq.shape[1]
        allowed = torch.ones(t, t, dtype=torch.bool)
        if attention == "prefix-lm":
            first_target = 1 + h.shape[1]
            tgt = torch.arange(t) >= first_target
            allowed = ~tgt[None, :] | (tgt[:, None] & (torch.arange(t)[None, :] <= torch.arange(t)[:, None]))
        add = torch.zeros(1, 1, t, t).masked_fill(~allowed, torch.finfo(torch.float32).min)
        out = ref.encoder(inputs_embeds=seq, attention_mask=add, position_ids=torch.arange(t)[None], labels=labels)
        n = lm.shape[1] - 1
        total, count = total + out.loss * n, count + n
    ref_loss = total / count
    ref_loss.backward()
    assert torch.allclose(loss, ref_loss, atol=1e-5), (float(loss), float(ref_loss))
    ref_grads = trainable_grads(ref)
    assert len(ref_grads) > 10 and set(ref_grads) <= set(ours)
    for k, g in ref_grads.items():
        assert torch.allclose(ours[k], g, atol=1e-6, rtol=1e-4), k


def test_stage2_loss_and_gradients_equal_the_official_reference(bases, tmp_path):
    """The official NT-Xent (pytorch-metric-learning, L2 distance on normalised embeddings, multi-similarity
    miner) on the official forward of every text, against our step through GradCache."""
    from pytorch_metric_learning import distances, losses, miners

    from lusifer_rag.train.gradcache import GradCache
    from lusifer_rag.train.steps import FinetuneStep
    from lusifer_rag.train.tokenizers import learner_tokenizer

    cfg = config(bases, "finetune", tmp_path)
    built = built_model(cfg)
    tm = built.model.eval()
    tm.runner = FinetuneStep.run
    tok = learner_tokenizer(cfg, built.sources)
    examples = [PairExample(q, [d], [DOCS[(i + 1) % 4]], cfg.data.retrieval_instruction, "toy")
                for i, (q, d) in enumerate(zip(QUERIES, DOCS))]
    ft = FinetuneStep(cfg, tm, tok, "xlm-r", torch.device("cpu"))
    labels, groups = ft.labels(examples, 0)
    loss = GradCache(ft.encode).step(ft.chunk_inputs(examples), ft.loss_fn(labels, groups, True))

    ref, layout = official_reference(built, cfg)
    ours = grads_as_official(built, layout, cfg)
    i = cfg.data.retrieval_instruction
    texts = ([f"<s>{i}.\n{e.query}</s>" for e in examples] + [f"<s>{i}. Candidate:\n{e.positives[0]}</s>" for e in examples]
             + [f"<s>{i}. Candidate:\n{e.negatives[0]}</s>" for e in examples])
    inner = ref.encoder.base_model.model.model
    reps = []
    for text in texts:
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        h = ref.connection_module.ff(ref.universal_learner(input_ids=ids).last_hidden_state)
        t = h.shape[1]
        g = inner(inputs_embeds=h, attention_mask=torch.zeros(1, 1, t, t), position_ids=torch.arange(t)[None]).last_hidden_state
        reps.append(ref.output_projection(g.mean(1))[0])
    reps = torch.stack(reps)
    official_labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7])
    distance = distances.LpDistance(normalize_embeddings=True)
    pairs = miners.MultiSimilarityMiner(epsilon=cfg.miner_epsilon, distance=distance)(reps, official_labels)
    ref_loss = losses.NTXentLoss(temperature=cfg.temperature, distance=distance)(reps, official_labels, pairs)
    ref_loss.backward()
    # our chunks reorder the rows ([q|p|n] per chunk of 2); the loss does not depend on the order
    assert math.isclose(float(loss), float(ref_loss), rel_tol=1e-5), (float(loss), float(ref_loss))
    ref_grads = trainable_grads(ref)
    assert any("encoder" in k and "lora" in k for k in ref_grads) and "output_projection.2.weight" in ref_grads
    for k, g in ref_grads.items():
        assert torch.allclose(ours[k], g, atol=1e-6, rtol=1e-3), k


def test_gradcache_chunks_give_the_full_batch_gradient(bases, tmp_path):
    from lusifer_rag.train.gradcache import GradCache
    from lusifer_rag.train.steps import FinetuneStep
    from lusifer_rag.train.tokenizers import learner_tokenizer

    examples = [PairExample(q, [d], [DOCS[(i + 2) % 4]], "Given a question, retrieve passages.", "toy")
                for i, (q, d) in enumerate(zip(QUERIES, DOCS))]
    grads = {}
    for chunk in (1, 4):
        cfg = config(bases, "finetune", tmp_path, gc_chunk_size=chunk)
        built = built_model(cfg)
        tm = built.model.eval()
        tm.runner = FinetuneStep.run
        ft = FinetuneStep(cfg, tm, learner_tokenizer(cfg, built.sources), "xlm-r", torch.device("cpu"))
        labels, groups = ft.labels(examples, 0)
        GradCache(ft.encode).step(ft.chunk_inputs(examples), ft.loss_fn(labels, groups, True))
        grads[chunk] = {n: p.grad.clone() for n, p in tm.named_parameters() if p.grad is not None}
    assert grads[1].keys() == grads[4].keys() and len(grads[1]) > 10
    for n in grads[1]:
        # fp32 sums in another order: equal up to rounding, which reaches ~3.5e-6 of the largest entry on some
        # CPUs' kernels (a chunking bug, e.g. a dropped cached gradient, is off by orders of magnitude more)
        scale = float(grads[4][n].abs().max())
        assert torch.allclose(grads[1][n], grads[4][n], atol=1e-5 * scale, rtol=1e-4), n


def test_configs_print_load_and_refuse_mistakes(tmp_path):
    text = default_config_text("align")
    assert "lr: 0.00015" in text and "restart_every_epoch: true" in text and "# Stage 1" in text
    path = tmp_path / "a.yaml"
    path.write_text(text)
    cfg = load_config(path, ["optim.lr=1e-4", "data.train=[x.jsonl]"])
    assert (cfg.stage, cfg.optim.lr, cfg.data.train, cfg.global_batch_size) == ("align", 1e-4, ["x.jsonl"], 256)
    toml = tmp_path / "b.toml"
    toml.write_text('stage = "finetune"\n[optim]\nlr = 2e-5\n')
    assert load_config(toml).optim.lr == 2e-5
    for bad, msg in ((["optim.lrr=1"], "unknown key"), (["stage=pretrain"], "allowed: \\['align', 'finetune'\\]"),
                     (["model.lora_r=0"], "model.lora_r=0"), (["global_batch_size=two"], "should be")):
        with pytest.raises(ConfigError, match=msg):
            load_config(path, bad)


def test_bad_training_records_name_their_file_and_line(tmp_path, bases):
    from lusifer_rag.train.data import AlignData, PairData

    f = tmp_path / "pairs.jsonl"
    f.write_text('{"query": "q", "positive": ["p"], "negative": ["n"]}\n\n{"query": "q", "positive": []}\n')
    cfg = config(bases, "finetune", tmp_path, data__train=[str(f)])
    with pytest.raises(ConfigError, match=r"pairs.jsonl:3: 'positive' must be"):
        PairData(cfg.data, 1, 0)
    f.write_text('{"query": "q", "positive": "p"}\n')
    with pytest.raises(ConfigError, match=r"pairs.jsonl:1: no 'negative' texts"):
        PairData(cfg.data, 1, 0)
    g = tmp_path / "align.jsonl"
    g.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"align.jsonl:2: not a JSON object"):
        AlignData(config(bases, "align", tmp_path, data__train=[str(g)]).data, 1, 0)
    with pytest.raises(ConfigError, match="no such file"):
        AlignData(config(bases, "align", tmp_path, data__train=[str(tmp_path / "none.jsonl")]).data, 1, 0)
