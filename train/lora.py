"""LoRA on the model stages' linear layers, with the official (peft) semantics and names.

Our stages fuse what the official modules keep apart (q|k|v, gate|up), so one of our Linears can stand for several
official ones. ``LoRALinear`` gives each official part its own adapter — A_i (r, in), B_i (out_i, r), its own
dropout, scale α/r — exactly as peft wraps each module separately: y = W x + b + scale · [B_i A_i drop_i(x)]_i.
B starts at zero (peft's default), so a fresh adapter leaves the model unchanged.

``attach_lora`` wraps the Linears the checkpoint layout names (``Layout.linears``: ours → official parts), so the
adapters export under the official keys (``<official path>.lora_A.<adapter>.weight``) and merge like the
inference loader does.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from lusifer_rag.errors import ConfigError


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus one LoRA adapter per output slice (``parts``: the slices' output sizes)."""

    def __init__(self, base: nn.Linear, parts: list[int], r: int, alpha: float, dropout: float):
        super().__init__()
        if sum(parts) != base.out_features:
            raise ConfigError(f"LoRA parts {parts} do not add up to the layer's {base.out_features} outputs")
        self.base = base
        self.parts, self.r, self.scale = list(parts), r, alpha / r
        self.lora_A = nn.ParameterList(nn.Parameter(torch.empty(r, base.in_features)) for _ in parts)
        self.lora_B = nn.ParameterList(nn.Parameter(torch.zeros(n, r)) for n in parts)
        for a in self.lora_A:  # peft's init: kaiming-uniform A, zero B
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)

    @property
    def weight(self) -> torch.Tensor:  # code that reads .weight (dtype, device) keeps working
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (*lead, out)
        deltas = [F.linear(F.linear(self.dropout(x), a.to(x.dtype)), b.to(x.dtype))  # (*lead, out_i)
                  for a, b in zip(self.lora_A, self.lora_B)]
        return y + self.scale * (deltas[0] if len(deltas) == 1 else torch.cat(deltas, dim=-1))

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """W + scale·[B_i A_i] in fp32 (the loader's merge), cast back."""
        delta = torch.cat([b.float() @ a.float() for a, b in zip(self.lora_A, self.lora_B)])  # (out, in)
        return (self.base.weight.float() + self.scale * delta).to(self.base.weight.dtype)


def attach_lora(model: nn.Module, linears: dict[str, list], r: int, alpha: float, dropout: float,
                prefixes: Iterable[str], only: Iterable[str] | None = None) -> dict[str, LoRALinear]:
    """Wrap the Linears of ``model`` whose names start with one of ``prefixes`` and that the layout gives LoRA
    (``linears``: our name → official parts, as ``Layout.linears``). ``only``: official module names to wrap
    (e.g. ["q_proj", "v_proj"]); None = every one (the official "all"). Returns {our name: wrapper}."""
    prefixes, wanted = tuple(prefixes), set(only) if only is not None else None
    out: dict[str, LoRALinear] = {}
    for ours, parts in linears.items():
        if not ours.startswith(prefixes) or not all(p.lora for p in parts):
            continue
        if wanted is not None and not {p.path.rsplit(".", 1)[-1] for p in parts} <= wanted:
            if {p.path.rsplit(".", 1)[-1] for p in parts} & wanted:
                raise ConfigError(f"LoRA target modules {sorted(wanted)} split a fused layer of ours ({ours}: "
                                  f"{[p.path.rsplit('.', 1)[-1] for p in parts]}); name all of its parts or none")
            continue
        parent_name, _, attr = ours.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, attr)
        if not isinstance(base, nn.Linear):
            raise ConfigError(f"{ours} is not a Linear ({type(base).__name__}): cannot put LoRA on it")
        wrapper = LoRALinear(base, [p.out_f for p in parts], r, alpha, dropout)
        setattr(parent, attr, wrapper)
        out[ours] = wrapper
    if not out:
        raise ConfigError(f"no LoRA target found under {list(prefixes)}" + (f" for modules {sorted(wanted)}"
                                                                            if wanted is not None else ""))
    return out


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRALinear by a plain Linear holding the merged weight; returns how many were merged."""
    n = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            merged = nn.Linear(module.base.in_features, module.base.out_features, bias=module.base.bias is not None,
                               device=module.base.weight.device, dtype=module.base.weight.dtype)
            merged.weight.data.copy_(module.merged_weight())
            if module.base.bias is not None:
                merged.bias.data.copy_(module.base.bias.data)
            setattr(parent, attr, merged)
            n += 1
    return n
