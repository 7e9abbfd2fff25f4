"""`mnistlab data list|download|verify`: the datasets, and what the download cache holds. No torch here."""

from __future__ import annotations

import argparse

from ..datasets import DATASETS, DatasetInfo, list_datasets


def add_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="list, download and verify the datasets",
                               description="The datasets mnistlab knows (mnist ships with it; the others are "
                                           "downloaded into $MNISTLAB_DATA_DIR, else your cache folder, each file "
                                           "kept only once its pinned MD5 matched).")
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="each dataset: classes, licence, and whether it is cached",
                                 description="Each dataset's title, classes and licence, and where it is cached.")
    listing.set_defaults(handler=cmd_list)
    download = actions.add_parser("download", help="download a dataset's four files into the cache",
                                  description="Download the four files of a dataset (the ones missing or corrupt) "
                                              "into the cache, each checked against its pinned MD5.")
    download.add_argument("name", choices=[name for name, info in DATASETS.items() if not info.bundled],
                          metavar="NAME", help=", ".join(name for name, info in DATASETS.items() if not info.bundled))
    download.set_defaults(handler=cmd_download)
    verify = actions.add_parser("verify", help="re-hash the cached files: ok, missing or corrupt",
                                description="Re-hash every cached file of a dataset (default: of each) against its "
                                            "pinned MD5. Exits 1 if any file is corrupt.")
    verify.add_argument("name", nargs="?", choices=list_datasets(), metavar="NAME",
                        help=f"{', '.join(list_datasets())} (default: all)")
    verify.set_defaults(handler=cmd_verify)


def cmd_list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..downloads import dataset_folder, file_status

    for info in DATASETS.values():
        print(f"{info.name}: {info.title}")
        print(f"  classes: {', '.join(info.classes)}" + (f" ({info.note})" if info.note else ""))
        print(f"  licence: {info.licence}; {info.homepage}")
        if info.bundled:
            print("  bundled with mnistlab (never downloaded)")
            continue
        status = file_status(info)
        ok = sum(state == "ok" for state in status.values())
        where = dataset_folder(info)
        corrupt = sum(state == "corrupt" for state in status.values())
        if ok == len(status):
            print(f"  cached in {where}")
        else:
            print(f"  not cached ({ok} of {len(status)} files in {where}"
                  + (f", {corrupt} corrupt" if corrupt else "") + f"): mnistlab data download {info.name}")
    return 0


def cmd_download(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..downloads import fetch

    info = DATASETS[args.name]
    folder = fetch(info)
    print(f"{info.title}: all {len(info.files)} files in {folder}, each with its pinned MD5")
    return 0


def cmd_verify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """ok / missing / corrupt per file; exit 1 when any file is corrupt (a missing one is fetched when needed)."""
    corrupt = 0
    for info in ([DATASETS[args.name]] if args.name else DATASETS.values()):
        corrupt += verify(info)
    return 1 if corrupt else 0


def verify(info: DatasetInfo) -> int:
    """Print each file's state; return how many are corrupt."""
    from ..downloads import dataset_folder, file_status

    print(f"{info.name}: {'bundled in ' if info.bundled else ''}{dataset_folder(info)}")
    status = file_status(info)
    for name, state in status.items():
        print(f"  {state:<8} {name}")
    bad = sum(state == "corrupt" for state in status.values())
    if bad and not info.bundled:
        print(f"  {bad} corrupt: never used; `mnistlab data download {info.name}` replaces them")
    return bad
