"""``olmo-model``: inspect model presets and configs.

olmo-model info 7b                       # JSON: parameter counts, FLOPs per token, shape
olmo-model info --config configs/1b.yaml --set model.n_layers=8
"""

from __future__ import annotations

import argparse
import json
import sys

from olmo.config import ConfigError, apply_overrides, validate
from olmo.model.config import PRESETS, ModelConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="olmo-model", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print parameter counts and FLOPs per token as JSON")
    info.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="a model preset")
    info.add_argument("--config", help="a training config YAML (its model section is used)")
    info.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model field, e.g. --set d_model=512 (repeatable)",
    )
    info.add_argument("--seq-len", type=int, help="context length for FLOPs (default: max)")
    return parser


def _resolve(args: argparse.Namespace) -> ModelConfig:
    if (args.preset is None) == (args.config is None):
        raise ConfigError("give exactly one of PRESET or --config FILE")
    if args.config is not None:
        from olmo.train.config import load_train_config

        overrides = [o if o.startswith("model.") else f"model.{o}" for o in args.overrides]
        return load_train_config(args.config, overrides).model
    data = apply_overrides({"preset": args.preset}, args.overrides, schema=ModelConfig)
    return validate(ModelConfig, data, source=f"model preset {args.preset}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _resolve(args)
    except ConfigError as e:
        print(f"olmo-model: {e}", file=sys.stderr)
        return 2
    from olmo.model.size import model_size

    size = model_size(config, args.seq_len)
    print(json.dumps({**size.as_dict(), "config": config.model_dump(mode="json")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
