"""``lusifer-rag train``: run a stage from a YAML/TOML config, a preset, or print a stage's default config.

Several processes (GPUs, nodes): ``torchrun --nproc_per_node N -m lusifer_rag train CONFIG``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusifer_rag.cli import command
from lusifer_rag.errors import ConfigError
from lusifer_rag.settings import Settings


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="training config (.yaml, .yml, .toml or .json)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--print-config", choices=["align", "finetune"], help="print a stage's commented default config")
    p.add_argument("--preset", choices=["smoke", "mini"], help="a complete run: data, both stages, the final model")
    p.add_argument("--output", help="output directory (a preset's, or overriding output_dir)")


@command("train", "train LUSIFER: stage 1 (align) / stage 2 (finetune), or a preset (smoke, mini)", _args)
def train_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from .config import default_config_text, load_config

    if args.print_config:
        print(default_config_text(args.print_config), end="")
        return 0
    from .trainer import train

    if args.preset:
        if not args.output:
            raise ConfigError("--preset needs --output DIR")
        from .presets import preset_configs

        for cfg in preset_configs(args.preset, Path(args.output), args.overrides):
            train(cfg)
        print(f"trained: {args.output} (load it with --embedder lusifer:{args.output})")
        return 0
    if not args.config:
        raise ConfigError("give a training CONFIG file, or --preset NAME --output DIR, or --print-config STAGE")
    overrides = args.overrides + ([f"output_dir={args.output}"] if args.output else [])
    out = train(load_config(args.config, overrides))
    print(f"trained: {out}")
    return 0
