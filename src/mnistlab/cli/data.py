"""`mnistlab data list|download|verify`: the datasets, where each is read from, and what the cache holds. No torch."""

from __future__ import annotations

import argparse

from ..dataset_info import DATASETS, DatasetInfo, list_datasets


def add_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="list, download and verify the datasets",
                               description="The datasets mnistlab knows (mnist ships with it; fashion-mnist is read "
                                           "from Debian's dataset-fashion-mnist package when it is installed, each "
                                           "file's content checked against its pinned SHA-256; the others are "
                                           "downloaded into $MNISTLAB_DATA_DIR, else your cache folder, each file "
                                           "kept only once its pinned MD5 matched).")
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="each dataset: classes, licence, and where it is read from",
                                 description="Each dataset's title, classes and licence, and where it is read from: "
                                             "bundled, a Debian package's folder (verified) or the cache.")
    listing.set_defaults(handler=cmd_list)
    download = actions.add_parser("download", help="download a dataset's four files into the cache",
                                  description="Download the four files of a dataset (the ones missing or corrupt) "
                                              "into the cache, each checked against its pinned MD5.")
    download.add_argument("name", choices=[name for name, info in DATASETS.items() if not info.bundled],
                          metavar="NAME", help=", ".join(name for name, info in DATASETS.items() if not info.bundled))
    download.set_defaults(handler=cmd_download)
    verify = actions.add_parser("verify", help="re-hash the files: ok, missing or corrupt",
                                description="Re-hash every file of a dataset (default: of each) against its pinned "
                                            "hash: the bundled copy's and a Debian package's by their content's "
                                            "SHA-256, the cache's by the published MD5. Exits 1 if any file is "
                                            "corrupt, or missing from a package's folder.")
    verify.add_argument("name", nargs="?", choices=list_datasets(), metavar="NAME",
                        help=f"{', '.join(list_datasets())} (default: all)")
    verify.set_defaults(handler=cmd_verify)


def cmd_list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..downloads import dataset_folder, file_status, system_root

    for info in DATASETS.values():
        print(f"{info.name}: {info.title}")
        print(f"  classes: {', '.join(info.classes)}" + (f" ({info.note})" if info.note else ""))
        print(f"  licence: {info.licence}; {info.homepage}")
        if info.bundled:
            print("  bundled with mnistlab (never downloaded)")
            continue
        if list_system_folder(info):
            continue
        if info.debian_package:
            print(f"  not installed: `sudo apt-get install {info.debian_package}` (Debian, Ubuntu) puts it in "
                  f"{system_root() / info.name}, used with no download")
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


def list_system_folder(info: DatasetInfo) -> bool:
    """Print where the dataset's Debian package put it, and whether every file verifies; False if not installed."""
    from ..downloads import content_problems, system_folder

    folder = system_folder(info)
    if folder is None:
        return False
    problems = {name: why for name, why in content_problems(info, folder).items() if why}
    if not problems:
        print(f"  available from {folder} (Debian package {info.debian_package}; each file's content has its pinned "
              "SHA-256)")
        return True
    name, why = next(iter(problems.items()))
    print(f"  NOT usable: {folder} ({info.debian_package}) is there, but {len(problems)} of its "
          f"{len(info.files)} files do not verify ({name} {why}): "
          f"`sudo apt-get install --reinstall {info.debian_package}` restores them; `mnistlab data verify {info.name}` "
          "lists each")
    return True


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
    """Print each file's state (the package's folder first, if installed, then the cache); return how many are bad."""
    from ..downloads import content_problems, dataset_folder, file_status, system_folder

    bad = 0
    system = system_folder(info)
    if system is not None:
        print(f"{info.name}: {system} (Debian package {info.debian_package})")
        for name, why in content_problems(info, system).items():
            state = "ok" if why is None else "missing" if why == "missing" else "corrupt"
            print(f"  {state:<8} {name}" + (f": {why}" if state == "corrupt" else ""))
            bad += why is not None
        if bad:
            print(f"  {bad} do not verify: the folder is never used; `sudo apt-get install --reinstall "
                  f"{info.debian_package}` restores them")
    print(f"{info.name}: {'bundled in ' if info.bundled else ''}{dataset_folder(info)}")
    status = file_status(info)
    for name, state in status.items():
        print(f"  {state:<8} {name}")
    corrupt = sum(state == "corrupt" for state in status.values())
    if corrupt and not info.bundled:
        print(f"  {corrupt} corrupt: never used; `mnistlab data download {info.name}` replaces them")
    return bad + corrupt
