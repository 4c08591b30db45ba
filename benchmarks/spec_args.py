"""`--spec key=value ...` for the benchmarks: overrides of blackbox_zo's Spec defaults, parsed as JSON values.

With no --spec a benchmark runs `bz.MeZO(model, maximize=...)` exactly as a user who sets nothing would.
"""

from __future__ import annotations

import argparse
import json


def add_spec_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", nargs="*", default=[], metavar="KEY=VALUE",
                        help="Spec overrides for the ZO rows, e.g. rule=raw lr=1e-6 radius_grow=1 (default: none)")


def add_space_arg(parser: argparse.ArgumentParser, steer: bool = False) -> None:
    parser.add_argument("--space", nargs="*", default=[], metavar="KEY=VALUE",
                        help="ParamSpace keywords for the ZO rows, e.g. include=norm noise=lowrank (default: all weights)")
    if steer:
        parser.add_argument("--steer", default=None, metavar="LAYERS",
                            help="tune a residual steering vector after these decoder layers (comma list, e.g. 10) "
                                 "instead of weights (blackbox_zo.steering_space)")


def tuned_space(model, tok, args):
    """(model, what MeZO tunes, a description): the steering space of --steer, else the model's --space weights."""
    if getattr(args, "steer", None):
        from blackbox_zo import steering_space

        layers = [int(i) for i in args.steer.split(",")]
        model, space = steering_space(model, tok, layers=layers, **space_overrides(args.space))
        return model, space, f"steering vectors after layers {args.steer}"
    from blackbox_zo import ParamSpace

    return model, ParamSpace(model, **space_overrides(args.space)), space_overrides(args.space) or "all weights"


def key_values(flag: str, items: list[str], keys) -> dict:
    """{'lr': 1e-06, 'rule': 'raw'} from ['lr=1e-6', 'rule=raw'] (values parsed as JSON, else kept as words);
    a key not in `keys` is named with the flag it came from."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in keys:
            raise SystemExit(f"{flag} {item!r}: expected KEY=VALUE with KEY one of {sorted(keys)}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw  # a bare word such as raw, normalized or lowrank
    return out


def spec_overrides(items: list[str]) -> dict:
    """Overrides of the Spec defaults, e.g. rule=raw lr=1e-6."""
    from blackbox_zo import Spec

    return key_values("--spec", items, Spec.keys())


SPACE_KEYS = ("include", "exclude", "noise", "mask_density", "blockwise", "evaluate")


def space_overrides(items: list[str]) -> dict:
    """ParamSpace keywords, e.g. include=norm noise=lowrank: which tensors and which directions."""
    return key_values("--space", items, SPACE_KEYS)
