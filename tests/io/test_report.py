"""report.html: its content (scores with the threshold, composition against the pool, method figures,
counts and timings), that every text is escaped, that a failure to write it never costs the run, and
that it loads in headless Chromium with every image decoded."""
from __future__ import annotations

import base64
import io
import json
import logging
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import write_jsonl

import dataselect
from dataselect.io import categorical, report

SOURCES = ["math", "cooking", "travel", "<b>odd</b> & $x$"]  # the last must come out escaped, not as markup


def _pool(path: Path, n: int = 48) -> Path:
    rows = []
    for i in range(n):
        source = SOURCES[i % len(SOURCES)]
        prompt = f"Sam has {i} apples and buys {i % 5} more. How many apples?" if source == "math" else f"Tell me about {source} number {i}."
        rows.append({"id": f"p{i}", "source": source, "lang": "en" if i % 3 else "de", "prompt": prompt, "response": f"Answer {i}."})
    return write_jsonl(path, rows)


def _run(tmp_path: Path, model: Path, **extra) -> dataselect.pipeline.RunResult:
    pool = _pool(tmp_path / "pool.jsonl")
    target = write_jsonl(tmp_path / "target.jsonl", [{"id": "t0", "prompt": "Lea has 4 pears and buys 5 more. How many?", "response": "9"},
                                                     {"id": "t1", "prompt": "Tom has 3 coins and finds 2. How many?", "response": "5", "task": "b"}])
    overrides = {"input.path": str(pool), "target.path": str(target), "model.name": str(model), "method.name": "rds", "method.budget": 8,
                 "output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.num_workers": 0,
                 "runtime.progress": False, "output.show_top": 0, **extra}
    from dataselect.pipeline import run

    return run(dataselect.load_config(None, overrides), quiet=True)


@pytest.fixture(scope="module")
def rds_run(tiny_bert_dir, tmp_path_factory):
    return _run(tmp_path_factory.mktemp("report"), tiny_bert_dir)


@pytest.fixture(scope="module")
def semdedup_run(tiny_bert_dir, tmp_path_factory):
    """SemDeDup over a pool where every prompt comes twice, the second time with one word more."""
    tmp_path = tmp_path_factory.mktemp("semdedup")
    rows = [json.loads(line) for line in _pool(tmp_path / "base.jsonl", 24).read_text().splitlines()]
    twice = rows + [{**row, "id": row["id"] + "-again", "prompt": row["prompt"] + " Thanks."} for row in rows]
    return _run(tmp_path, tiny_bert_dir, **{"input.path": str(write_jsonl(tmp_path / "pool2.jsonl", twice)), "method.name": "semdedup",
                                             "method.budget": 1.0, "method.semdedup.eps": 0.02, "method.cluster.num_clusters": 2})


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _section(page: str, title: str) -> str:
    match = re.search(rf"<section><h2>{re.escape(title)}[^<]*</h2>(.*?)</section>", page, re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_the_report_shows_scores_threshold_composition_and_figures(rds_run):
    out = rds_run.output_dir
    page = (out / "report.html").read_text(encoding="utf-8")
    images = _images(page)
    assert len(images) >= 3  # score histogram, composition chart(s), timings
    from PIL import Image

    for png in images:
        width, height = Image.open(io.BytesIO(png)).size
        assert width > 0 and height > 0

    scores = _section(page, "Scores")
    assert len(_images(scores)) == 1
    threshold = pq.read_table(out / "selection.parquet").column("score").to_numpy().min()
    assert f"selection threshold (dashed: the lowest selected score) {threshold:.6g}" in scores

    # composition by `source`, found without being named, against the pool's, counted from the input
    composition = _section(page, "Composition")
    assert "By <code>source</code>" in composition and "By <code>lang</code>" in composition
    records = {r["id"]: r for r in map(json.loads, (out.parent / "pool.jsonl").read_text().splitlines())}
    pool_counts = Counter(r["source"] for r in records.values())
    selected_counts = Counter(records[i]["source"] for i in rds_run.ids)
    for source in ["math", "cooking", "travel"]:
        share = 100 * selected_counts[source] / len(rds_run.ids)
        assert f"<tr><td>{source}</td><td class=\"num\">{pool_counts[source]}</td>" in composition
        assert f"<td class=\"num\">{selected_counts[source]}</td><td>{share:.2f}%</td>" in composition

    method = _section(page, "Method figures (rds)")
    assert "<td>target</td><td class=\"num\">2</td><td class=\"num\">8</td>" in method  # per-task counts: one task, 2 targets, 8 chosen
    assert "duplicates_collapsed" in method
    counts = _section(page, "Counts and bad inputs")
    assert "<td>selected</td><td class=\"num\">8</td>" in counts
    timings = _section(page, "Timings")
    assert "score_pool" in timings and "mfu" in timings


def test_every_text_is_escaped(rds_run):
    page = (rds_run.output_dir / "report.html").read_text(encoding="utf-8")
    assert "<b>odd</b>" not in page
    assert "&lt;b&gt;odd&lt;/b&gt; &amp; $x$" in page
    assert re.findall(r"<(\w+)", page) and set(re.findall(r"<(\w+)", page)) <= {
        "html", "head", "meta", "title", "link", "style", "body", "h1", "h2", "h3", "p", "b", "code", "section", "table", "thead",
        "tbody", "tr", "th", "td", "figure", "img", "figcaption"}
    assert "<script" not in page and "http" not in page.split("<body>", 1)[1]  # self-contained: nothing to fetch


def test_the_pool_store_holds_the_categorical_fields(rds_run):
    from dataselect.io.shards import ShardStore

    root = Path(json.loads((rds_run.output_dir / "manifest.json").read_text())["stages"]["pool"]["store"])
    assert categorical.store_fields(ShardStore(root)) == ["source", "lang"]


def test_per_task_scores_get_one_histogram_each(tmp_path, tiny_bert_dir):
    result = _run(tmp_path, tiny_bert_dir, **{"target.task_field": "task"})
    scores = _section((result.output_dir / "report.html").read_text(encoding="utf-8"), "Scores")
    assert result.scores.shape[1] == 2 and len(_images(scores)) == 2
    tasks = pq.read_table(result.output_dir / "selection.parquet").to_pydict()
    for task in ("", "b"):
        chosen = [s for s, t in zip(tasks["score"], tasks["task"]) if t == task]
        assert f"Task {task}: " in scores and f"score) {min(chosen):.6g}" in scores


def test_a_named_field_comes_first_and_dsir_shows_its_kl(tmp_path, tiny_bert_dir):
    result = _run(tmp_path, tiny_bert_dir, **{"method.name": "dsir", "method.dsir.features": "reference", "method.dsir.min_words": 2,
                                             "output.report_field": "lang"})
    page = (result.output_dir / "report.html").read_text(encoding="utf-8")
    composition = _section(page, "Composition")
    assert composition.index("By <code>lang</code>") < composition.index("By <code>source</code>")
    method = _section(page, "Method figures (dsir)")
    assert "KL reduction" in method and f"{result.manifest['method']['kl_reduction']:.4g}" in method
    assert len(_images(method)) == 1


def test_a_report_failure_is_one_log_line_and_the_run_stands(tmp_path, tiny_bert_dir, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(report, "render", broken)
    with caplog.at_level(logging.WARNING, logger="dataselect.io.report"):
        result = _run(tmp_path, tiny_bert_dir)
    assert [r.getMessage() for r in caplog.records] == [
        "report.html not written (RuntimeError: no fonts); selection.parquet and manifest.json are complete"]
    assert not (result.output_dir / "report.html").exists()
    assert pq.read_table(result.output_dir / "selection.parquet").num_rows == 8 and (result.output_dir / "manifest.json").exists()


def test_categorical_fields_are_short_repeating_strings():
    records = [{"id": str(i), "source": ["a", "b"][i % 2], "n": i % 2, "note": f"free text {i}", "prompt": ["x", "y"][i % 2],
                "tag": "same", "long": ["a" * 80, "b" * 80][i % 2]} for i in range(40)]
    assert categorical.find_categorical(records, {"id", *categorical.TEXT_FIELDS}) == ["source"]


def test_composition_counts_each_selected_row_once_per_record(tmp_path):
    """A record selected twice (two of its chunks, as DSIR can) counts twice; rows of one record count once each in the pool."""
    import pyarrow as pa

    from dataselect.io.shards import ShardStore
    from dataselect.stats import SourceStats

    store = ShardStore(tmp_path / "store")
    shards = [([0, 0, 1, 2], ["a", "a", "b", None]), ([3, 4, 4], ["b", "a", "a"])]
    for index, (positions, values) in enumerate(shards):
        store.write_shard(index, pa.table({"position": pa.array(positions, pa.int64()), "field:src": pa.array(values, pa.string())}),
                          SourceStats("pool"))
    store.complete(len(shards), {})
    found = categorical.composition(store, "src", np.array([4, 0, 4, 2, 9]))  # 9: no such row
    assert found.pool == Counter({"a": 4, "b": 2, None: 1})
    assert found.selected == Counter({"a": 3, None: 1})


# ---------------------------------------------------------------------------------------------
# in a browser
# ---------------------------------------------------------------------------------------------


def _chromium() -> tuple[str, str] | str:
    """(browser, driver) paths, or why the browser test cannot run here."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        return "no Chromium here (Debian: apt-get install chromium chromium-driver, as .ci/run does)"
    return browser, driver


def _in_chromium(page: Path) -> tuple[str, list, list, str]:
    """(title, severe console errors, [width, height] of every decoded image, the text a reader sees) of a page
    loaded in headless Chromium."""
    found = _chromium()
    if isinstance(found, str):
        pytest.skip(found)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="dataselect-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
        sizes = driver.execute_script(
            "return Promise.all(Array.from(document.images).map(i => i.decode().then(() => [i.naturalWidth, i.naturalHeight])))")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
        title = driver.title
        text = driver.execute_script("return document.body.innerText")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return title, errors, sizes, text


@pytest.mark.parametrize("run", ["rds_run", "semdedup_run"])
def test_the_report_loads_in_headless_chromium_and_every_image_decodes(run, request):
    result = request.getfixturevalue(run)
    title, errors, sizes, text = _in_chromium(result.output_dir / "report.html")
    method = result.manifest["config"]["method"]["name"]
    assert title == f"dataselect report: {method}"
    assert errors == []
    assert len(sizes) >= 3 and all(width > 0 and height > 0 for width, height in sizes)
    if method == "semdedup":  # what the reader sees: the removed twins, and no random keys passed off as scores
        assert "kept twin" in text and "-again: " in text and "seeded random pick" in text and "selection threshold" not in text


def _eval_result() -> dict:
    """An eval.json as `dataselect eval` writes it: two arms and a fitted keep sweep at two step counts."""
    def arm(name, kind, bpb, gap=None):
        entry = {"name": name, "run": "runs/x", "kind": kind, "size": 2000, "steps": 200, "seeds": [0, 1, 2], "bpb": bpb,
                 "mean": float(np.mean(bpb)), "std": float(np.std(bpb, ddof=1)), "ci95": [min(bpb) - 0.01, max(bpb) + 0.01]}
        if gap is not None:
            entry.update({"gap_to_random": gap, "gap_ci95": [gap - 0.02, gap + 0.02], "snr": 3.5, "better_than_random": gap > 0.02})
        return entry

    points = [{"keep": keep, "steps": steps, "size": int(keep * 1e4), "rows": int(keep * 3e4), "bpb": [b, b], "mean": b, "ci95": [b, b]}
              for keep, steps, b in [(0.01, 100, 1.30), (0.1, 100, 1.20), (0.3, 100, 1.25), (0.01, 400, 1.35), (0.1, 400, 1.10), (0.3, 400, 1.05)]]
    fit = {"a": 1.0, "c": 2.0, "d": 0.5, "b": {"0.01": -0.2, "0.1": -0.1, "0.3": -0.05}, "sse": 0.001,
           "best_keep": [{"steps": 100, "keep": 0.1}, {"steps": 400, "keep": 0.3}]}
    return {"format": 1, "arms": [arm("<b>rds</b>", "selection", [1.10, 1.12, 1.11], 0.1), arm("random", "random", [1.21, 1.20, 1.22], 0.0)],
            "keep_sweep": [{"run": "runs/x", "points": points, "best": [{"steps": 100, "keep": 0.1, "mean": 1.2}, {"steps": 400, "keep": 0.3, "mean": 1.05}],
                            "fit": fit}],
            "eval_target": {"path": "half_b.jsonl", "samples": 660, "bytes": 123456, "overlap": [{"run": "runs/x", "shared": 0}]},
            "settings": {"seeds": 3, "steps": [100, 400], "model": None, "proxy": {"batch_size": 32}}}


def test_the_eval_report_shows_the_arms_their_intervals_and_the_keep_sweep(tmp_path):
    path = report.write_eval_report_safely(tmp_path, _eval_result())
    page = path.read_text(encoding="utf-8")
    comparison = _section(page, "Eval: did the selection help?")
    assert len(_images(comparison)) == 2  # the arms' intervals, the gap to random
    assert "&lt;b&gt;rds&lt;/b&gt;" in comparison and "<b>rds</b>" not in comparison
    assert "<td>better</td>" in comparison and "123,456 scored bytes" in comparison
    sweep = _section(page, "Compute-aware budgets: runs/x")
    assert len(_images(sweep)) == 1 and "100 steps: keep 0.1" in sweep and "predicted best keep at 400 steps" in sweep
    title, errors, sizes, _ = _in_chromium(path)
    assert title == "dataselect report: eval" and errors == []
    assert len(sizes) == 3 and all(width > 0 and height > 0 for width, height in sizes)


# ---------------------------------------------------------------------------------------------
# the methods' own figures, from the metrics each method reports (no run needed)
# ---------------------------------------------------------------------------------------------


def _selection(metrics: dict, pool_scores, scores, columns: dict | None = None, tasks: list | None = None):
    from dataselect.select.base import Selection

    return Selection(ids=[f"s{i}" for i in range(len(scores))], scores=np.asarray(scores, np.float64), positions=np.arange(len(scores)),
                     columns=columns or {}, metrics=metrics, pool_scores=pool_scores, tasks=tasks)


def _page(metrics: dict, pool_scores, scores, method: str, columns: dict | None = None, tasks: list | None = None) -> str:
    selection = _selection(metrics, pool_scores, scores, columns, tasks)
    manifest = {"config": {"method": {"name": method}}, "counts": {"selected": len(scores)}, "timings_s": {"score_pool": 1.0, "total": 1.5}}
    return report.render(selection, manifest, None)


def test_cluster_figures_show_sizes_selected_and_dedup_removals():
    metrics = {"num_clusters": 3, "cluster_sizes": [50, 30, 20], "candidates_per_cluster": [45, 30, 18],
               "selected_per_cluster": [4, 3, 3], "dedup": {"eps": 0.1, "removed": 7, "removed_per_cluster": [5, 0, 2]}}
    page = _page(metrics, np.linspace(0, 1, 100), [0.9] * 10, "cluster")
    method = _section(page, "Method figures (cluster)")
    assert "<td class=\"num\">3</td><td class=\"num\">20</td><td class=\"num\">30</td><td class=\"num\">50</td><td class=\"num\">7</td>" in method
    assert len(_images(method)) == 1 and "dedup.removed" in method


def test_el2n_shows_its_window_and_the_proxy_training_loss():
    scores = np.array([0.5, np.nan, 0.7, 0.2, np.inf, 0.9])
    metrics = {"score": "el2n", "keep": "middle", "window_min": 0.5, "window_max": 0.7, "pool_mean": 0.575,
               "proxy": {"losses": [[3.0, 2.5, 2.1], [3.1, 2.4, 2.2]], "sample_size": 100}}
    page = _page(metrics, scores, [0.5, 0.7], "el2n")
    assert "2 pool rows have no finite score" in _section(page, "Scores")
    method = _section(page, "Method figures (el2n)")
    assert "<td>middle</td>" in method and len(_images(method)) == 1  # the loss curves
    from dataselect.select.el2n import EL2NMethod
    from dataselect.select.figures import Curves

    curves = [f for f in EL2NMethod().figures(_selection(metrics, scores, [0.5, 0.7])) if isinstance(f, Curves)]
    assert [c.series for c in curves] == [{"losses (seed 0)": [3.0, 2.5, 2.1], "losses (seed 1)": [3.1, 2.4, 2.2]}]


def test_many_tasks_get_one_histogram_of_each_rows_best_score_and_no_scores_is_a_note():
    pool = np.random.default_rng(0).random((50, 9))
    tasks = {f"t{i}": 1 for i in range(9)}
    page = _page({"tasks": tasks}, pool, [0.99] * 9, "rds", {"task": [f"t{i}" for i in range(9)]}, list(tasks))
    scores = _section(page, "Scores")
    assert len(_images(scores)) == 1 and "9 tasks: each row&#x27;s highest task score" in scores
    assert "keeps no per-sample pool scores" in _page({}, None, [1.0], "random")


def test_a_semdedup_report_shows_removed_twins_and_no_made_up_scores_target_or_budget(semdedup_run):
    page = (semdedup_run.output_dir / "report.html").read_text()
    scores = _section(page, "Scores")
    assert "seeded random pick" in scores and not _images(scores) and "threshold" not in scores
    head = page.split("<section>")[0]
    assert "<td>target</td>" not in head and "every eligible sample (1.0)" in head
    method = _section(page, "Method figures (semdedup)")
    removed = semdedup_run.manifest["method"]["dedup"]["removed"]
    assert removed > 0 and "<th>kept twin</th>" in method and "-again: " in method


def test_a_histogram_says_why_grey_rows_were_not_selected_and_that_ranks_are_sampled():
    manifest = {"config": {"method": {"name": "quality"}}, "counts": {}, "timings_s": {"total": 1.0},
                "budget": {"not_eligible": {"short": 3344}}}
    selection = _selection({}, np.random.default_rng(0).random(100), [0.5, 0.9, 0.2])
    selection.ranking = "sampled"
    scores = _section(report.render(selection, manifest, None), "Scores")
    assert "3,344 short that could not be selected whatever their score" in scores
    assert "Gumbel top-K" in scores and "selection threshold" not in scores
