"""The `dataselect` command: run, config, apply, eval, methods, bench.

    dataselect run --config FILE [--set dotted.key=value ...] [--dry-run | --print-config] [-q]
    dataselect config [--config FILE] [--set ...]     the resolved config, every key, as YAML
    dataselect apply --scorer DIR --input PATH --output DIR (--keep F | --threshold X) [--format F] [--set ...]
                                                      a saved scorer over any input; the records that pass, in its format
    dataselect eval RUN_DIR [RUN_DIR ...] --eval-target PATH [--output DIR] [--seeds N] [--steps S[,S2]] [--keep F,F2,...]
                                                      train small LMs on each selection and on random subsets; bits per byte with 95% CIs
    dataselect methods                                the selection methods, one line each
    dataselect cache list|clean [--cache-dir DIR] [--older-than DAYS] [--partial] [--dry-run]
                                                      what runtime.cache_dir holds; remove old or unfinished entries
    dataselect bench [--n N] [--device cpu|cuda] [--json FILE]   every stage's throughput and roofline figures
    dataselect bench NAME [ARGS ...]                  a script from bench/ (source checkout)

Exit codes (docs/exit-codes.md): 0 done; 1 an unexpected error (a bug: the traceback says where); 2 a
config, input or output error, a usage error, or a failed dry-run check (one line says which); 130
interrupted (Ctrl-C: finished shards are kept, a rerun resumes).
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

EXIT_OK = 0
EXIT_UNEXPECTED = 1  # an uncaught exception: Python's own exit code, with its traceback
EXIT_ERROR = 2  # config, input or output error, usage error, failed dry-run check
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


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
    evaluate = commands.add_parser("eval", help="did the selection help? small LMs trained on each selection and on random subsets "
                                   "of the same size, over seeds, measured in bits per byte on a held-out target (docs/eval.md)")
    evaluate.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run folders (manifest.json, selection.parquet)")
    evaluate.add_argument("--eval-target", required=True, help="held-out target (anything target.path takes); must not overlap the runs' targets")
    evaluate.add_argument("--output", "-o", help="folder for eval.json, report.html and the finished pairs (default: RUN_DIR/eval of the first run)")
    evaluate.add_argument("--seeds", type=int, help="training seeds per arm (default 3)")
    evaluate.add_argument("--seed", type=int, help="the first seed (default 0)")
    evaluate.add_argument("--steps", help="fine-tuning steps, S or S1,S2 (the arms train at the first; a keep sweep at each)")
    evaluate.add_argument("--keep", help="keep sweep: top fractions of the run's pool scores, e.g. 0.01,0.03,0.1,0.3")
    evaluate.add_argument("--lr", type=float, help="peak fine-tuning learning rate (default 1e-3)")
    evaluate.add_argument("--checkpoints", type=int, help="bits per byte averaged over the last N checkpoints (default 1)")
    evaluate.add_argument("--pool-baseline", action="store_true", help="also train on the whole pool at equal steps")
    evaluate.add_argument("--rs2", action="store_true", help="also train with RS2 (a fresh random subset every round) at equal steps")
    evaluate.add_argument("--model", help="a causal LM (name or folder) to fine-tune instead of the proxy pre-trained on the pool")
    evaluate.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train and measure (default auto)")
    evaluate.add_argument("--cache-dir", help="where the pre-trained proxy is cached (default: the first run's runtime.cache_dir)")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="any eval setting, e.g. --set proxy.steps=500 (docs/eval.md lists them)")
    evaluate.add_argument("--quiet", "-q", action="store_true", help="no table and no progress bars")
    commands.add_parser("methods", help="list the selection methods")
    cache = commands.add_parser("cache", help="list what runtime.cache_dir holds, or remove old or unfinished entries")
    cache.add_argument("action", choices=["list", "clean"], help="list: every entry with its size and age; clean: remove entries")
    cache.add_argument("--cache-dir", help="the cache folder or object-storage URL (default: runtime.cache_dir's default, or --config's)")
    _add_config_arguments(cache)
    cache.add_argument("--older-than", type=float, metavar="DAYS", help="clean: only entries last used more than DAYS days ago")
    cache.add_argument("--partial", action="store_true", help="clean: only unfinished stores (an interrupted run's)")
    cache.add_argument("--dry-run", action="store_true", help="clean: say what would be removed, remove nothing")
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
        return EXIT_ERROR
    sys.argv = [str(script), *args]
    if str(checkout) not in sys.path:  # as `python -m bench.NAME` run in the checkout has it: bench/ is a package there
        sys.path.insert(0, str(checkout))
    try:
        runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as stop:  # a script ends with sys.exit(its code): an error stops here, success returns
        if stop.code not in (None, 0):
            raise
    return EXIT_OK


def config_yaml(config) -> str:
    """The resolved config as YAML, every key in the order of the config's sections (storage options' values redacted)."""
    import yaml

    from dataselect.config import without_secrets

    return yaml.safe_dump(without_secrets(config.model_dump(mode="json")), sort_keys=False, default_flow_style=False, allow_unicode=True)


def _methods() -> int:
    from dataselect.methods import method_list

    for name, available, description in method_list():
        print(f"{name:<8} {description}" + ("" if available else "  [not in this build yet]"))
    return EXIT_OK


def _cache(args: argparse.Namespace) -> int:
    from dataselect.config import load_config
    from dataselect.io.cache import clean_cache, clean_summary, list_cache
    from dataselect.io.remote import is_url, use_storage_options

    runtime = load_config(args.config, args.overrides).runtime
    use_storage_options(runtime.storage_options)  # a cache in object storage is listed with --config's runtime.storage_options
    if args.cache_dir:
        root: Path | str = args.cache_dir if is_url(args.cache_dir) else Path(args.cache_dir).expanduser()
    else:
        root = runtime.cache_url() or runtime.resolved_cache_dir()
    if args.action == "list":
        print(list_cache(root))
        return EXIT_OK
    removed, busy = clean_cache(root, args.older_than, args.partial, args.dry_run)
    for entry in removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {entry.kind}/{entry.name}")
    print(clean_summary(removed, busy, args.dry_run))
    return EXIT_OK


def _dry_run(config) -> int:
    from dataselect.dryrun import dry_run

    checks = dry_run(config)
    for check in checks:
        print(check.line())
    failed = [check.name for check in checks if not check.ok]
    print(f"dry run: {len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return EXIT_ERROR if failed else EXIT_OK


def _apply_overrides(args: argparse.Namespace) -> list[str]:
    """`dataselect apply` is `dataselect run` with method.name: apply; its flags are these keys."""
    import json

    cut = f"method.apply.keep={args.keep}" if args.keep is not None else f"method.apply.threshold={args.threshold}"
    written = args.format or ("parquet" if str(args.input).endswith(".parquet") else "jsonl")
    return ["method.name=apply", f"method.apply.scorer={json.dumps(args.scorer)}", f"input.path={json.dumps(args.input)}",
            f"output.dir={json.dumps(args.output)}", f"output.write={written}", cut]


def _numbers(text: str | None, kind: type, flag: str) -> list | None:
    if text is None:
        return None
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DataselectError(f"config error: {flag}: expected comma-separated numbers, got {text!r}") from None


def _eval(args: argparse.Namespace) -> int:
    import yaml

    from dataselect.config import eval_config
    from dataselect.evaluate.runner import evaluate, table_text

    values: dict = {}
    for item in args.overrides:  # dotted keys into the settings tree (proxy.steps=500), values read as YAML
        key, equals, raw = item.partition("=")
        if not equals:
            raise DataselectError(f"config error: --set {item!r} is not of the form key=value")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf.strip()] = value
    flags = {"seeds": args.seeds, "seed": args.seed, "steps": _numbers(args.steps, int, "--steps"), "keep": _numbers(args.keep, float, "--keep"),
             "lr": args.lr, "checkpoints": args.checkpoints, "model": args.model, "device": args.device, "cache_dir": args.cache_dir}
    values.update({key: value for key, value in flags.items() if value is not None})
    values.update({key: True for key in ("pool_baseline", "rs2") if getattr(args, key)})
    settings = eval_config(values)
    output = Path(args.output) if args.output else Path(args.runs[0]) / "eval"
    result = evaluate(args.runs, args.eval_target, settings, output, progress=not args.quiet)
    if not args.quiet:
        print(table_text(result))
        print(f"eval.json: {output / 'eval.json'}\nreport: {output / 'report.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `dataselect` command (argv without the program name; sys.argv's when None); returns the exit code (docs/exit-codes.md)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and (len(argv) == 1 or argv[1].startswith("-")):
        from dataselect.benchmark import main as stage_bench  # `dataselect bench [--n 100 ...]`: every stage

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            return stage_bench(argv[1:])
        except DataselectError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_ERROR
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(format="%(message)s", level=logging.INFO, stream=sys.stderr)  # library log lines, as the CLI's own
    try:
        if args.command == "bench":
            return _bench(args.name, args.args)
        if args.command == "methods":
            return _methods()
        if args.command == "cache":
            return _cache(args)
        if args.command == "eval":
            return _eval(args)
        from dataselect.config import load_config

        overrides = list(args.overrides) + (_apply_overrides(args) if args.command == "apply" else [])
        if getattr(args, "quiet", False):
            overrides.append("runtime.progress=false")
        config = load_config(getattr(args, "config", None), overrides)
        if args.command == "config" or getattr(args, "print_config", False):
            sys.stdout.write(config_yaml(config))
            return EXIT_OK
        if getattr(args, "dry_run", False):
            return _dry_run(config)
        from dataselect.pipeline import run

        run(config, quiet=args.quiet)
        return EXIT_OK
    except DataselectError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # the file system said no (a full disk, a folder that cannot be written)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; finished shards are kept and a rerun resumes from them", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
