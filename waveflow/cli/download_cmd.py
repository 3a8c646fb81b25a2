"""``waveflow download [NAME ...]``: fetch NVIDIA's published WaveGlow checkpoints by name, once.

Each NAME is downloaded into the cache folder ($WAVEFLOW_CACHE, else $XDG_CACHE_HOME/waveflow, else
~/.cache/waveflow), checked (byte size and sha256 where they are known, the transfer's length
always), converted through the safe NVIDIA reader (no pickled code runs) and kept there as a
waveflow checkpoint, whose path is printed. A broken download resumes where it stopped. Later
uses, by any command that takes a checkpoint (e.g. ``waveflow synthesize NAME mel.npy -o out``) or
by ``Vocoder.from_pretrained(NAME)``, load the cached file without the network; commands fetch
a name on first use too, so this command only does it ahead of time.

Without NAME, lists the downloadable models, where each comes from and what the cache holds.
Offline: put the published file at the path the error names (or set WAVEFLOW_CACHE to a folder
that holds it) and run the command again.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "download",
        help="fetch NVIDIA's published WaveGlow checkpoints by name into the cache (once)",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="registered names; none: list them")
    parser.add_argument("--force", action="store_true", help="discard the cached copy and fetch it afresh")
    parser.add_argument(
        "--sha256", metavar="HEX", help="the digest the published file must have (one NAME only)"
    )
    parser.set_defaults(func=run)
    return parser


def _describe(model) -> list[str]:
    from waveflow.pretrained import download

    if model.sha256 is not None or model.size is not None:
        size = f"{model.size:,} bytes" if model.size is not None else "size not published"
        checked = f"sha256 {model.sha256 or 'not published'}, {size}"
    else:
        checked = model.verification
    return [
        f"{model.name}: {model.description}",
        f"    url: {model.url}",
        f"    documented in: {model.source}",
        f"    by hand: {model.page}",
        f"    checked: {checked}",
        f"    licence: {model.licence}",
        f"    cache: {download.state(model)}",
    ]


def run(args: argparse.Namespace) -> int:
    from waveflow import pretrained
    from waveflow.cli import CLIError
    from waveflow.cli._inputs import notice, progress_disabled
    from waveflow.pretrained import download

    if not args.names:
        if args.sha256 is not None:
            raise CLIError("--sha256 needs the NAME it checks")
        for name in sorted(pretrained.DOWNLOADS):
            print("\n".join(_describe(pretrained.DOWNLOADS[name])))
        return 0
    if args.sha256 is not None and len(args.names) != 1:
        raise CLIError(f"--sha256 checks one NAME, got {len(args.names)}")
    models = [pretrained.get(name) for name in args.names]  # every name checked before any download
    for model in models:
        if isinstance(model, pretrained.PretrainedModel):
            notice(f"{model.name} ships inside the package; nothing to download")
            print(pretrained.resolve(model.name))
            continue
        path = download.fetch(
            model, force=args.force, sha256=args.sha256, disable_progress=progress_disabled()
        )
        print(path)
    return 0
