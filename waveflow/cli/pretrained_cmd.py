"""``waveflow pretrained``: the models that ship inside the package, by name.

Every command that takes a checkpoint also takes one of these names, e.g.
``waveflow resynthesize default in.wav out.wav``. ``--sample`` prints the path of the shipped
public-domain speech clip to try them on.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrained",
        help="list the models shipped with waveflow (usable wherever a checkpoint is asked for)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sample", action="store_true", help="print the path of the shipped sample clip")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from waveflow import pretrained

    if args.sample:
        print(pretrained.SAMPLE_CLIP)
        return 0
    aliases = {target: alias for alias, target in pretrained.ALIASES.items()}
    for name, model in sorted(pretrained.REGISTRY.items()):
        alias = f" (alias: {aliases[name]})" if name in aliases else ""
        size = f"{model.path.stat().st_size / 1e6:.1f} MB" if model.path.is_file() else "missing"
        print(f"{name}{alias}: {model.description}")
        print(f"    licence: {model.licence}")
        print(f"    file: {model.path} ({size}); card: {model.path.parent / model.card}")
    for name, entry in sorted(pretrained.DOWNLOADS.items()):
        print(f"{name}: {entry.description}")
        print(f"    downloaded on first use (waveflow download {name}); licence: {entry.licence}")
    return 0
