"""What the benchmark scripts share (run them as `python -m bench.NAME` from the checkout, or
`dataselect bench NAME`): the shared data paths, the process-tree measurement, running the CLI and
reading its manifest, machine and load information, and `append_row`, which keeps every run's figures
as a row of bench/results/NAME.jsonl (bench/RESULTS.md is generated from those rows: python -m bench.results).

The default data sits in ../shared/data beside the repository, which a clone does not have: every
data path is an argument."""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import io
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]  # the checkout
RESULTS_DIR = ROOT / "bench" / "results"


# ------------------------------------------------------------------------------------------------
# the shared data and work folders
# ------------------------------------------------------------------------------------------------


SHARED_DATA = ROOT.parent / "shared" / "data"


def pool_sources(pool: str | Path) -> dict[str, str]:
    """id -> `source` of every record of a jsonl pool (gzipped or not): what the benches count selections by."""
    opener = gzip.open if str(pool).endswith(".gz") else open
    with opener(pool, "rt", encoding="utf-8") as handle:
        return {str(row["id"]): row.get("source") for row in map(json.loads, handle)}


def pool_sample(pool: str | Path, n: int, rng: Any) -> list[dict]:
    """n records of a jsonl pool (gzipped or not) drawn without replacement by `rng` (a numpy Generator), in pool order."""
    opener = gzip.open if str(pool).endswith(".gz") else open
    with opener(pool, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    return [records[i] for i in sorted(rng.choice(len(records), size=min(n, len(records)), replace=False))]


def write_unchanged(path: Path, text: str) -> None:
    """Write `text` unless the file already holds it: a rewrite would change its mtime, and with it the
    cache key of every store scored from it."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)  # a kept --cache folder may not exist yet
        path.write_text(text, encoding="utf-8")


def data_file(path: str | Path, flag: str) -> Path:
    """The file, or exit with one line saying which argument names it."""
    path = Path(path).expanduser()
    if not path.is_file():
        sys.exit(f"error: {path} not found; pass {flag} PATH (the default is in ../shared/data beside the repository, "
                 "which a clone does not have)")
    return path


@contextlib.contextmanager
def work_folder(prefix: str, keep: str | None = None) -> Iterator[Path]:
    """A temporary folder, removed at the end whatever happens; or `keep`, created and left in place."""
    if keep:
        folder = Path(keep).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)

# ------------------------------------------------------------------------------------------------
# the process-tree measurement
# ------------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants now."""
    total, stack, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while stack:
        current = stack.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        stack += _children(current)
    return total


@dataclass
class Measured:
    returncode: int
    wall_s: float
    peak_rss_bytes: int
    output: str
    cpu_s: float  # user + system seconds of the tree's waited-for processes
    load_before: float  # 1-minute load average
    load_after: float

    @property
    def peak_rss_gb(self) -> float:
        return self.peak_rss_bytes / 1e9


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_command(name: str, *args: str) -> list[str]:
    """A fresh interpreter running bench/NAME.py as `dataselect bench NAME` does, with the checkout importable
    (running the file itself puts bench/ first on sys.path, where `import bench.common` fails)."""
    return [sys.executable, "-m", "dataselect.cli", "bench", name, *args]


CHILD_OF_A_BENCH = "DATASELECT_BENCH_CHILD"  # set in the environment of every process run_measured starts


def run_measured(command: list[str], interval: float = 0.05, env: dict | None = None) -> Measured:
    load_before, cpu_before = os.getloadavg()[0], _children_cpu()
    start = time.perf_counter()
    env = dict(os.environ if env is None else env, **{CHILD_OF_A_BENCH: "1"})  # a bench script run here writes no row of its own
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(process.pid))
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0]
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    return Measured(process.returncode, wall, peak[0], output, _children_cpu() - cpu_before, load_before, os.getloadavg()[0])

def write_rendered(source: str | Path, out: Path, limit: int | None = None) -> list[str]:
    """The records of `source` (at most `limit`) as the engine renders them with `input.render: plain`
    (prompt + blank line + response; records it would skip left out), written as {id, text, source} JSON
    Lines: one input file for the engine and a peer to read alike. Returns the ids."""
    from dataselect.config import SourceConfig
    from dataselect.io.plan import iter_samples
    from dataselect.io.render import TextRenderer
    from dataselect.stats import SourceStats

    config = SourceConfig(path=str(source), render="plain", on_error="skip", limit=limit)
    ids = []
    with open(out, "w", encoding="utf-8") as handle:
        for sample in iter_samples(config, TextRenderer(config), SourceStats("bench")):
            handle.write(json.dumps({"id": sample.id, "text": sample.text, "source": sample.record.get("source")}) + "\n")
            ids.append(sample.id)
    return ids

# ------------------------------------------------------------------------------------------------
# running `dataselect run` and reading its manifest (the GSM8K-target benches)
# ------------------------------------------------------------------------------------------------


def gsm8k_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The arguments every GSM8K-target bench takes: pool, target, budget, output folder, config overrides."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", type=Path, default=SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--out", default=out)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    return parser


def common_overrides(pool: Path, target: Path, budget: int, extra: list[str]) -> list[str]:
    return [f"input.path={pool}", "input.prompt_field=prompt", "input.response_field=response",
            f"target.path={target}", "target.prompt_field=prompt", "target.response_field=response",
            f"method.budget={budget}", "runtime.progress=false", "output.show_top=0", *extra]


def run_method(method: str, overrides: list[str], out: Path, source_of: dict[str, str], keep_cache: str | None = None) -> dict:
    """`dataselect run` for one method from an empty cache, measured as a process tree; prints and returns its figures.
    keep_cache: an empty folder to use as the cache and leave in place (for figures read from it afterwards)."""
    with work_folder(f"dataselect-bench-{method}-", keep_cache) as cache:  # an empty cache for each run
        items = [f"method.name={method}", *overrides, f"output.dir={out}", f"runtime.cache_dir={cache}"]
        command = [sys.executable, "-m", "dataselect.cli", "run", "-q", *[arg for item in items for arg in ("--set", item)]]
        measured = run_measured(command)
    if measured.returncode != 0:
        print(measured.output)
        raise SystemExit(f"{method} failed")
    manifest = json.loads((out / "manifest.json").read_text())
    ids = pq.read_table(out / "selection.parquet", columns=["id"]).column("id").to_pylist()
    picked = Counter(source_of[i] for i in ids)
    print(f"{method}: selected {len(ids)}, share gsm8k {picked['gsm8k'] / len(ids):.4f} ({picked['gsm8k']}/{len(ids)}); "
          f"wall {measured.wall_s:.1f}s, CPU {measured.cpu_s:.0f}s (process tree, peak RSS {measured.peak_rss_gb:.2f} GB); "
          f"1-min load average before {measured.load_before:.2f}, after {measured.load_after:.2f}")
    print(f"  other sources: {dict(picked.most_common(5))}")
    print(f"  timings: {manifest['timings_s']}")
    print(f"  stages (docs, seconds): {({name: (s['docs'], s['seconds']) for name, s in manifest['stages'].items()})}")
    return {"wall_s": measured.wall_s, "cpu_s": measured.cpu_s, "peak_rss_gb": measured.peak_rss_gb, "load_before": measured.load_before,
            "load_after": measured.load_after, "ids": ids, "share": picked["gsm8k"] / len(ids), "manifest": manifest}

# ------------------------------------------------------------------------------------------------
# generated pools (the scale benches)
# ------------------------------------------------------------------------------------------------


TOPICS = {
    "math": "apples sum total number add equals minus divide times count pears coins how many more".split(),
    "cooking": "bake bread oven flour salt minutes stir sauce boil pan heat dough recipe taste".split(),
    "travel": "train city hotel ticket museum river walk map airport night street beach trip".split(),
    "code": "function return value list loop python error class string index file print array".split(),
}
COMMON = "the a of and to in is it that for on with as was at by this be from or an are".split()


def generate(path: Path, docs: int, seed: int = 0, batch: int = 100_000) -> None:
    """`docs` jsonl records {"id", "text"} of 20-60 words: a topic's words mixed with common ones."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    vocab = [np.array(TOPICS[name] + COMMON) for name in names]
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, docs, batch):
            n = min(batch, docs - start)
            topics = rng.integers(len(names), size=n)
            lengths = rng.integers(20, 61, size=n)
            lines = []
            for i in range(n):
                words = vocab[topics[i]][rng.integers(len(vocab[topics[i]]), size=lengths[i])]
                lines.append(json.dumps({"id": f"d{start + i}", "text": " ".join(words)}))
            handle.write("\n".join(lines) + "\n")


def ensure_pool(work: Path, docs: int) -> Path:
    """work/pool.jsonl, generated (and timed) unless an earlier run with --work left it there."""
    pool = work / "pool.jsonl"
    if not pool.exists():
        started = time.perf_counter()
        generate(pool, docs)
        print(f"generated {docs:,} docs ({pool.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - started:.1f}s")
    return pool

# ------------------------------------------------------------------------------------------------
# corrupted responses (the noise benches) and coverage (the embedding benches)
# ------------------------------------------------------------------------------------------------


MARKER = "<|endoftext|>"


def prepared(work: Path | None, docs: int, prefix: str) -> tuple[Path, Path, Path]:
    """(work folder: `work`, or a new temporary one; its pool of `docs` documents; its 500-document target)."""
    work = work or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    pool, target = ensure_pool(work, docs), work / "target.jsonl"
    generate(target, 500, seed=1)
    return work, pool, target


def config_with_default_proxy(path: str | Path, overrides: list[str] | None = None) -> Any:
    """A config file with its methods' `proxy` blocks left out: the shipped el2n.yaml and color.yaml size their
    proxy for the 1,200-sample demo pool, and the benchmarks measure the default proxy (config.ProxyConfig)."""
    import yaml

    from dataselect.config import build_config

    tree = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for section in (tree.get("method") or {}).values():
        if isinstance(section, dict):
            section.pop("proxy", None)
    return build_config(tree, overrides)


def corrupt(rows: list[dict], fraction: float, min_words: int, rng: np.random.Generator) -> np.ndarray:
    """Corrupts rows in place; returns [N] int8: 0 clean, 1 shuffled words, 2 random pool words."""
    bodies = [r["response"].removesuffix(MARKER) for r in rows]
    vocabulary = [w for b in bodies for w in b.split()]
    eligible = np.flatnonzero([len(b.split()) >= min_words for b in bodies])
    count = int(round(fraction * len(rows)))
    if count > len(eligible):
        sys.exit(f"only {len(eligible)} responses have >= {min_words} words; cannot corrupt {count}")
    chosen = rng.permutation(rng.choice(eligible, size=count, replace=False))
    kind = np.zeros(len(rows), np.int8)
    for j, i in enumerate(chosen):
        words = bodies[i].split()
        if j % 2 == 0:
            shuffled = list(words)
            while shuffled == words:  # a permutation that changes the text
                shuffled = [words[k] for k in rng.permutation(len(words))]
            new, kind[i] = shuffled, 1
        else:
            new, kind[i] = [vocabulary[k] for k in rng.integers(0, len(vocabulary), len(words))], 2
        rows[i]["response"] = " ".join(new) + (MARKER if rows[i]["response"].endswith(MARKER) else "")
    return kind


def coverage(pool, selected: np.ndarray) -> float:
    """Mean over pool vectors of 1 - cos(nearest selected vector); selected: [m, d] unit rows."""
    from dataselect.index import ArrayVectors, PoolIndex

    sims, _ = PoolIndex.build(ArrayVectors(selected), "flat", device="cpu").nearest(pool)
    return float(np.mean(1.0 - np.minimum(sims.astype(np.float64), 1.0)))

# ------------------------------------------------------------------------------------------------
# results as data: one row per run in bench/results/NAME.jsonl
# ------------------------------------------------------------------------------------------------


def git_commit() -> str | None:
    """The checkout's commit (with "+dirty" when it has uncommitted changes), or None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """The machine a row was measured on: CPU model, cores, native bf16, GPU (if torch sees one)."""
    from dataselect.hardware import cpu_name, native_bf16_flag

    info: dict[str, Any] = {"cpu": cpu_name(), "cores": os.cpu_count(), "native_bf16": native_bf16_flag(), "system": platform.system()}
    if "torch" in sys.modules:  # a GPU is named only where the bench loaded torch anyway
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_average() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages (timings taken beside other work are marked by it)."""
    return [round(x, 2) for x in os.getloadavg()]


def append_row(bench: str, figures: dict[str, Any], command: list[str] | None = None, results: Path | None = None, **extra: Any) -> dict[str, Any]:
    """Append one row (date, commit, machine, load average, command, figures) to `results` (default
    bench/results/<bench>.jsonl) and return it."""
    row = {"bench": bench, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
           "machine": machine(), "load_average": load_average(),
           "command": " ".join(command if command is not None else ["python", "-m", f"bench.{bench}", *sys.argv[1:]]),
           **extra, "figures": figures}
    path = results or RESULTS_DIR / f"{bench}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, default=_plain) + "\n")
    return row


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, paths: as JSON has them."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class _Tee(io.TextIOBase):
    """Writes to `stream` and keeps a copy: a bench's printed summary, for its row."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def record(bench: str, main: Callable[[], Any], output_lines: int = 60) -> int:
    """Run a bench's `main` with what it prints shown and kept, then append its row to bench/results/<bench>.jsonl:
    the figures `main` returns (a dict) and the last `output_lines` lines it printed. Returns its exit code
    (a failed run, an int other than 0, writes no row)."""
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        returned = main()
    code = returned if isinstance(returned, int) else 0
    if code == 0 and not os.environ.get(CHILD_OF_A_BENCH):  # a step of another bench's measurement: that bench writes the row
        output = [without_machine_paths(line) for line in tee.copy.getvalue().splitlines()[-output_lines:]]
        append_row(bench, returned if isinstance(returned, dict) else {}, output=output)
    return code


def without_machine_paths(line: str) -> str:
    """A printed line as a row keeps it: the checkout as `.`, the temporary folder as `$TMPDIR` (whole folders
    only: /tmp/tmpab12 becomes $TMPDIR/tmpab12)."""
    for folder, name in ((str(ROOT), "."), (tempfile.gettempdir(), "$TMPDIR")):
        line = re.sub(re.escape(folder) + r"(?![^/\s'\"),;:])", name, line)
    return line
