"""The `dataselect` command: run, config, methods, bench.

    dataselect run --config FILE [--set dotted.key=value ...] [--dry-run | --print-config] [-q]
    dataselect config [--config FILE] [--set ...]     the resolved config, every key, as YAML
    dataselect apply --scorer DIR --input PATH --output DIR (--keep F | --threshold X) [--format F] [--set ...]
                                                      a saved scorer over any input; the records that pass, in its format
    dataselect methods                                the selection methods, one line each
    dataselect bench [--n N] [--device cpu|cuda] [--json FILE]   every stage's throughput and roofline figures
    dataselect bench NAME [ARGS ...]                  a script from bench/ (source checkout)
"""
from __future__ import annotations

import argparse
import logging
import os
import runpy
import sys
from pathlib import Path

from dataselect import __version__
from dataselect.errors import DataselectError


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML config file (optional: the defaults plus --set otherwise)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any dotted config key, e.g. --set method.budget=100 (repeatable)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataselect", description="GPU-accelerated data selection for LM training data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Start with: dataselect run --config configs/rds.yaml   (docs/config.md lists every key)",
    )
    parser.add_argument("--version", action="version", version=f"dataselect {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="score a pool and select from it")
    _add_config_arguments(run)
    run.add_argument("--quiet", "-q", action="store_true", help="no summary and no progress bars (sets runtime.progress: false)")
    run.add_argument("--dry-run", action="store_true",
                     help="check the config, inputs, model and output folder without scoring, one line per check")
    run.add_argument("--print-config", action="store_true", help="print the resolved config (every key) as YAML and exit")
    config = commands.add_parser("config", help="print the resolved config (every key and its value) as YAML")
    _add_config_arguments(config)
    apply = commands.add_parser("apply", help="stream an input through a saved scorer and write the records that pass")
    apply.add_argument("--scorer", required=True, help="a saved scorer's folder (a run's output/scorer, or the run folder)")
    apply.add_argument("--input", required=True, help="anything input.path takes: file, glob, directory, hf:NAME, -")
    apply.add_argument("--output", required=True, help="output folder: the passing records, scores.parquet, manifest.json")
    cut = apply.add_mutually_exclusive_group(required=True)
    cut.add_argument("--keep", type=float, help="the fraction of the scorer's fitting pool that its threshold would keep, in (0, 1]")
    cut.add_argument("--threshold", type=float, help="the score a record must reach")
    apply.add_argument("--format", choices=["jsonl", "parquet"], help="format of the passing records (default: the input's)")
    apply.add_argument("--quiet", "-q", action="store_true", help="no summary and no progress bars")
    apply.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="any other config key, e.g. --set runtime.num_workers=2 or --set input.text_field=content")
    commands.add_parser("methods", help="list the selection methods")
    bench = commands.add_parser("bench", help="every stage's throughput with MFU and bandwidth figures (dataselect bench --help), "
                                "or NAME: a script from bench/", add_help=False)
    bench.add_argument("name", nargs="?", default=None, help="script name in bench/ (without it: the stage benchmark)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    return parser


def _bench(name: str, args: list[str]) -> int:
    """`python -m bench.NAME ARGS` from the source checkout, in this process."""
    checkout = Path(__file__).resolve().parent.parent
    script = checkout / "bench" / f"{name}.py"
    if not script.exists() or name in ("common", "__init__"):
        print(f"error: no benchmark {name!r} (looked for {script}); bench/ ships with the source checkout", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args]
    if str(checkout) not in sys.path:  # as `python -m bench.NAME` run in the checkout has it: bench/ is a package there
        sys.path.insert(0, str(checkout))
    try:
        runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as stop:  # a script ends with sys.exit(its code): an error stops here, success returns
        if stop.code not in (None, 0):
            raise
    return 0


def config_yaml(config) -> str:
    """The resolved config as YAML, every key in the order of the config's sections."""
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, default_flow_style=False, allow_unicode=True)


def _methods() -> int:
    from dataselect.methods import method_list

    for name, available, description in method_list():
        print(f"{name:<8} {description}" + ("" if available else "  [not in this build yet]"))
    return 0


def _dry_run(config) -> int:
    from dataselect.dryrun import dry_run

    checks = dry_run(config)
    for check in checks:
        print(check.line())
    failed = [check.name for check in checks if not check.ok]
    print(f"dry run: {len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 2 if failed else 0


def _apply_overrides(args: argparse.Namespace) -> list[str]:
    """`dataselect apply` is `dataselect run` with method.name: apply; its flags are these keys."""
    import json

    cut = f"method.apply.keep={args.keep}" if args.keep is not None else f"method.apply.threshold={args.threshold}"
    written = args.format or ("parquet" if str(args.input).endswith(".parquet") else "jsonl")
    return ["method.name=apply", f"method.apply.scorer={json.dumps(args.scorer)}", f"input.path={json.dumps(args.input)}",
            f"output.dir={json.dumps(args.output)}", f"output.write={written}", cut]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and (len(argv) == 1 or argv[1].startswith("-")):
        from dataselect.benchmark import main as stage_bench  # `dataselect bench [--n 100 ...]`: every stage

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            return stage_bench(argv[1:])
        except DataselectError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(format="%(message)s", level=logging.INFO, stream=sys.stderr)  # library log lines, as the CLI's own
    try:
        if args.command == "bench":
            return _bench(args.name, args.args)
        if args.command == "methods":
            return _methods()
        from dataselect.config import load_config

        overrides = list(args.overrides) + (_apply_overrides(args) if args.command == "apply" else [])
        if getattr(args, "quiet", False):
            overrides.append("runtime.progress=false")
        config = load_config(getattr(args, "config", None), overrides)
        if args.command == "config" or getattr(args, "print_config", False):
            sys.stdout.write(config_yaml(config))
            return 0
        if getattr(args, "dry_run", False):
            return _dry_run(config)
        from dataselect.pipeline import run

        run(config, quiet=args.quiet)
        return 0
    except DataselectError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system said no (a full disk, a folder that cannot be written)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; finished shards are kept and a rerun resumes from them", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
