"""`dataselect run --config FILE [--set dotted.key=value ...]` and `dataselect bench`."""
from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

from dataselect.errors import DataselectError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataselect", description="GPU-accelerated data selection for LM training data.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="score a pool and select from it")
    run.add_argument("--config", "-c", required=True, help="YAML config file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override any dotted config key")
    run.add_argument("--quiet", "-q", action="store_true", help="no summary (progress bars follow runtime.progress)")
    bench = commands.add_parser("bench", help="measure throughput (runs a script from bench/)")
    bench.add_argument("name", nargs="?", default="throughput", help="script name in bench/ (default: throughput, the end-to-end selection throughput)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    return parser


def _bench(name: str, args: list[str]) -> int:
    script = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    if not script.exists():
        print(f"error: no benchmark {name!r} (looked for {script}); bench/ ships with the source checkout", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and (len(argv) == 1 or (argv[1].startswith("-") and argv[1] not in ("-h", "--help"))):
        argv.insert(1, "throughput")  # `dataselect bench --n 100`: the default benchmark, with its arguments
    args = _parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "bench":
            return _bench(args.name, args.args)
        from dataselect.config import load_config
        from dataselect.pipeline import run

        config = load_config(args.config, args.overrides)
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
