"""SWDE book benchmark of the scraper generator, side by side with AutoScraper.

Protocol (``/work/shared/benchmarks/swde-book/README.md``): per site, the scout gets the
seed pages 0000–0002 with their ground-truth values as examples (``author`` as a list, the
other fields as the first value, copied unchanged, so booksamillion's ``": 9781…"`` keeps
its ``": "``). It may also read the raw HTML of other pages of the site, never their
truth: ``--unlabelled N`` hands it pages 0003… (HTML only) to rank candidate selectors.
The spec it builds extracts pages 0003–0119; the official scorer is run on the
predictions (standard metric unless ``--lenient``).

AutoScraper (benchmark only: ``pip install autoscraper "beautifulsoup4<4.13"``; with
bs4 4.13+ AutoScraper 1.1.14 learns no usable rules, because its empty-attribute filters
stopped matching) is built from the same three
seed pages and values (``build(html=…, wanted_dict=…, update=True)``) and applied with
``get_result_exact``; for single-valued fields its first result is kept.

Run::

    .venv/bin/python -m bench.swde --out bench/results/swde.json
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.scraper import Page, ScraperSpec, SeedPage
from scrapers.extract import extract_records
from scrapers.runtime.decode import decode_body
from scrapers.scout import build_spec, scout

log = logging.getLogger("bench.swde")

DATA = Path("/work/shared/benchmarks/swde-book")
SITES = ("booksamillion", "christianbook")
FIELDS = ("title", "author", "isbn_13", "publisher", "publication_date")
MULTI = frozenset({"author"})
SEEDS = 3
PAGES = 120

Predictor = Callable[[str, str], dict[str, Any]]


def load_site(data: Path, site: str) -> tuple[list[Page], list[dict[str, Any]]]:
    """The site's pages (decoded) and ground-truth rows, in page order."""
    truth = [
        json.loads(line)
        for line in (data / site / "groundtruth.jsonl").read_text("utf-8-sig").splitlines()
        if line.strip()
    ]
    pages = []
    for number in range(PAGES):
        path = data / site / "pages" / f"{number:04d}.htm"
        pages.append(Page(url=path.as_uri(), body=decode_body(path.read_bytes())))
    return pages, truth


def seed_examples(pages: list[Page], truth: list[dict[str, Any]]) -> list[SeedPage]:
    """Seed pages with their truth as examples (first value, or the list for authors)."""
    seeds = []
    for page, row in zip(pages[:SEEDS], truth[:SEEDS], strict=True):
        values: dict[str, str | list[str]] = {
            name: list(row[name]) if name in MULTI else row[name][0] for name in FIELDS if row[name]
        }
        seeds.append(SeedPage(url=page.url, values=values))
    return seeds


def mendline_predictor(
    pages: list[Page], seeds: list[SeedPage], unlabelled: int
) -> tuple[Predictor, ScraperSpec, float]:
    """Scout the seeds (and ``unlabelled`` other pages) and return an extraction function."""
    started = time.perf_counter()
    blueprint = scout(pages[: SEEDS + unlabelled], seeds)
    spec = build_spec(blueprint, name="swde")
    elapsed = time.perf_counter() - started

    def predict(html: str, url: str) -> dict[str, Any]:
        records = extract_records(spec, html, url)
        return records[0] if records else {}

    return predict, spec, elapsed


def autoscraper_predictor(pages: list[Page], seeds: list[SeedPage]) -> tuple[Predictor, float]:
    """Build AutoScraper from the seed pages and values."""
    from autoscraper import AutoScraper  # type: ignore[import-untyped]  # benchmark only

    started = time.perf_counter()
    scraper = AutoScraper()
    for page, seed in zip(pages, seeds, strict=False):
        wanted = {
            name: value if isinstance(value, list) else [value]
            for name, value in seed.values.items()
        }
        scraper.build(html=page.body, wanted_dict=wanted, update=True)
    elapsed = time.perf_counter() - started

    def predict(html: str, url: str) -> dict[str, Any]:
        found = scraper.get_result_exact(html=html, group_by_alias=True)
        row: dict[str, Any] = {}
        for name in FIELDS:
            values = list(dict.fromkeys(found.get(name) or []))
            row[name] = values if name in MULTI else (values[0] if values else None)
        return row

    return predict, elapsed


def predict_site(site: str, pages: list[Page], predict: Predictor) -> tuple[list[str], float]:
    """Prediction lines for the test pages and the extraction time in seconds."""
    lines = []
    started = time.perf_counter()
    for number in range(SEEDS, PAGES):
        row = predict(pages[number].body, pages[number].url)
        out: dict[str, Any] = {"site": site, "page": f"{number:04d}"}
        out.update({name: row.get(name) for name in FIELDS})
        lines.append(json.dumps(out, ensure_ascii=False))
    return lines, time.perf_counter() - started


def run_scorer(data: Path, predictions: Path, lenient: bool) -> dict[str, Any]:
    """Run the official scorer and parse its table."""
    command = [sys.executable, str(data / "score.py"), str(predictions)]
    for site in SITES:
        command += ["--truth", str(data / site / "groundtruth.jsonl")]
    if lenient:
        command.append("--strip-leading-colon")
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    scores: dict[str, Any] = {"fields": {}, "sites": {}, "macro_f1": None}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 8 and parts[0] in SITES:
            scores["fields"][f"{parts[0]}/{parts[1]}"] = {
                "p": float(parts[2]),
                "r": float(parts[3]),
                "f1": float(parts[4]),
            }
        elif parts[:1] == ["site_macro_f1"]:
            scores["sites"][parts[1]] = float(parts[2])
        elif parts[:1] == ["macro_f1"]:
            scores["macro_f1"] = float(parts[1])
    return scores


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--pred-dir", type=Path, help="keep the prediction files here")
    parser.add_argument("--unlabelled", type=int, default=12, help="extra pages (HTML only)")
    parser.add_argument("--lenient", action="store_true", help="scorer --strip-leading-colon")
    parser.add_argument("--skip-autoscraper", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    pred_dir = args.pred_dir or Path(tempfile.mkdtemp(prefix="swde-"))
    pred_dir.mkdir(parents=True, exist_ok=True)
    systems = ["mendline"] + ([] if args.skip_autoscraper else ["autoscraper"])
    lines: dict[str, list[str]] = {system: [] for system in systems}
    timings: dict[str, dict[str, float]] = {system: {} for system in systems}
    specs: dict[str, Any] = {}
    for site in SITES:
        pages, truth = load_site(args.data, site)
        seeds = seed_examples(pages, truth)
        predict, spec, build_s = mendline_predictor(pages, seeds, args.unlabelled)
        specs[site] = spec.model_dump(mode="json", exclude={"meta"})
        site_lines, extract_s = predict_site(site, pages, predict)
        lines["mendline"] += site_lines
        timings["mendline"][f"{site}/build_s"] = round(build_s, 3)
        timings["mendline"][f"{site}/extract_s"] = round(extract_s, 3)
        log.info("%s: mendline built in %.2fs, extracted in %.2fs", site, build_s, extract_s)
        if "autoscraper" in systems:
            auto_predict, auto_build_s = autoscraper_predictor(pages, seeds)
            site_lines, extract_s = predict_site(site, pages, auto_predict)
            lines["autoscraper"] += site_lines
            timings["autoscraper"][f"{site}/build_s"] = round(auto_build_s, 3)
            timings["autoscraper"][f"{site}/extract_s"] = round(extract_s, 3)
            log.info(
                "%s: autoscraper built in %.2fs, extracted in %.2fs", site, auto_build_s, extract_s
            )
    results: dict[str, Any] = {"metric": "lenient" if args.lenient else "standard"}
    for system in systems:
        path = pred_dir / f"{system}.jsonl"
        path.write_text("\n".join(lines[system]) + "\n", encoding="utf-8")
        results[system] = run_scorer(args.data, path, args.lenient) | {"timings": timings[system]}
    results["mendline"]["specs"] = specs
    print_table(results, systems)
    print(f"predictions in {pred_dir}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def print_table(results: dict[str, Any], systems: list[str]) -> None:
    """Per (site, field) F1 of each system, then the macro averages."""
    header = f"{'site/field':<32}" + "".join(f"{system:>13}" for system in systems)
    print(f"SWDE book, {results['metric']} metric (F1)")
    print(header)
    print("-" * len(header))
    for key in results[systems[0]]["fields"]:
        cells = "".join(f"{results[system]['fields'][key]['f1']:>13.4f}" for system in systems)
        print(f"{key:<32}{cells}")
    print("-" * len(header))
    for site in SITES:
        cells = "".join(f"{results[system]['sites'][site]:>13.4f}" for system in systems)
        print(f"{'macro ' + site:<32}{cells}")
    cells = "".join(f"{results[system]['macro_f1']:>13.4f}" for system in systems)
    print(f"{'macro F1':<32}{cells}")


if __name__ == "__main__":
    sys.exit(main())
