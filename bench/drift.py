"""Scraper repair on real redesigns: the 5 before/after page pairs of ``drift/``.

For each case a scraper is learned from ``before.html`` with its truth records as examples,
run unchanged on ``after.html`` (how does it break?), then repaired with
:func:`scrapers.repair.repair_spec` using the records it extracted from ``before.html`` as
the last-good records. The after extraction is scored against ``truth.json``: set
precision / recall / F1 over ``(section, text, href)`` triples and ``(section, text)`` pairs.

Records are link directories (a column heading with its links). A record of the spec
format cannot read its ancestor's heading, so a column is one record: ``section`` plus
``text`` and ``href`` as lists, flattened back into one triple per link for scoring.

Usage::

    .venv/bin/python -m bench.drift [--data DIR] [--out bench/results/drift.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.scraper import ExampleValue, Page, ScraperSpec, SeedPage
from scrapers import build_spec, extract_records, scout
from scrapers.errors import ScraperError
from scrapers.repair import RepairFailedError, repair_spec

log = logging.getLogger(__name__)

DATA_DIR = Path("/work/shared/benchmarks/drift")
Triple = tuple[str, str, str]


@dataclass
class Score:
    """Set precision, recall and F1 of extracted items against the truth."""

    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0

    @classmethod
    def of(cls, found: set[Any], truth: set[Any]) -> Score:
        """Score the set ``found`` against ``truth``."""
        hits = len(found & truth)
        precision = hits / len(found) if found else 0.0
        recall = hits / len(truth) if truth else 0.0
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        return cls(round(precision, 3), round(recall, 3), round(f1, 3))


@dataclass
class CaseResult:
    """What happened to one case."""

    case: str
    built: str = ""
    before_triples: Score = field(default_factory=Score)
    unchanged_records: int = 0
    unchanged_triples: Score = field(default_factory=Score)
    unchanged_pairs: Score = field(default_factory=Score)
    repair: str = ""
    repaired_records: int = 0
    repaired_triples: Score = field(default_factory=Score)
    repaired_pairs: Score = field(default_factory=Score)
    confidence: float = 0.0
    lost_fields: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _clean(value: Any) -> str:
    return " ".join(str(value or "").split())


def _examples(fields: list[str], records: list[dict[str, str]]) -> list[dict[str, ExampleValue]]:
    if "section" not in fields:
        return [{name: _clean(record[name]) for name in fields} for record in records]
    columns: dict[str, dict[str, list[str]]] = {}
    for record in records:
        column = columns.setdefault(_clean(record["section"]), {"text": [], "href": []})
        column["text"].append(_clean(record["text"]))
        column["href"].append(_clean(record["href"]))
    return [{"section": name, **links} for name, links in columns.items()]


def _triples(records: list[dict[str, Any]]) -> set[Triple]:
    found: set[Triple] = set()
    for record in records:
        section = _clean(record.get("section"))
        texts, hrefs = record.get("text"), record.get("href")
        texts = texts if isinstance(texts, list) else [texts]
        hrefs = hrefs if isinstance(hrefs, list) else [hrefs]
        for index in range(max(len(texts), len(hrefs))):
            text = _clean(texts[index]) if index < len(texts) else ""
            href = _clean(hrefs[index]) if index < len(hrefs) else ""
            if text or href:
                found.add((section, text, href))
    return found


def _pairs(triples: set[Triple]) -> set[tuple[str, str]]:
    return {(section, text) for section, text, _ in triples}


def _extract(spec: ScraperSpec, page: Page) -> list[dict[str, Any]]:
    try:
        return extract_records(spec, page.body, page.url)
    except ScraperError as exc:
        log.info("%s: %s", page.url, exc)
        return []


def run_case(directory: Path) -> CaseResult:
    """Build, break and repair the scraper of one case."""
    truth = json.loads((directory / "truth.json").read_text(encoding="utf-8"))
    result = CaseResult(case=directory.name)
    url = f"https://{truth.get('site', directory.name)}.example/"
    before = Page(
        url=url, body=(directory / "before.html").read_text(encoding="utf-8", errors="replace")
    )
    after = Page(
        url=url, body=(directory / "after.html").read_text(encoding="utf-8", errors="replace")
    )
    fields: list[str] = truth["fields"]
    before_truth = _triples(truth["before"]["records"])
    after_truth = _triples(truth["after"]["records"])
    examples = _examples(fields, truth["before"]["records"])
    spec: ScraperSpec | None = None
    # All examples first; when the scout finds no selector common to them (columns in
    # different grid rows), the longest leading run of examples it can learn from.
    for count in range(len(examples), 1, -1):
        seeds = [SeedPage(url=url, records=examples[:count])]
        try:
            spec = build_spec(scout([before], seeds, kind="html-list"), name=directory.name)
        except ScraperError as exc:
            result.built = f"failed: {exc}"
            continue
        result.built = (
            f"{spec.container} ({len(spec.fields)} fields, from {count}/{len(examples)} "
            f"example records)"
        )
        break
    if spec is None:
        return result
    last_good = _extract(spec, before)
    result.before_triples = Score.of(_triples(last_good), before_truth)
    broken = _extract(spec, after)
    result.unchanged_records = len(broken)
    result.unchanged_triples = Score.of(_triples(broken), after_truth)
    result.unchanged_pairs = Score.of(_pairs(_triples(broken)), _pairs(after_truth))
    started = time.perf_counter()
    try:
        repaired = repair_spec(spec, [after], last_good)
    except RepairFailedError as exc:
        result.seconds = round(time.perf_counter() - started, 2)
        result.repair = f"failed: {exc}"
        result.notes = exc.tried
        return result
    result.seconds = round(time.perf_counter() - started, 2)
    unchanged = repaired.spec is spec
    result.repair = "kept (old spec works)" if unchanged else f"patched: {repaired.spec.container}"
    result.repaired_records = len(repaired.records)
    found = _triples(repaired.records)
    result.repaired_triples = Score.of(found, after_truth)
    result.repaired_pairs = Score.of(_pairs(found), _pairs(after_truth))
    result.confidence = repaired.confidence
    result.lost_fields = repaired.lost_fields
    result.notes = repaired.notes
    return result


def _macro(results: list[CaseResult], name: str) -> float:
    values = [getattr(item, name).f1 for item in results]
    return round(sum(values) / len(values), 3) if values else 0.0


def table(results: list[CaseResult]) -> str:
    """A Markdown table of the results, one row per case and a macro row."""
    lines = [
        "| case | before F1 (triples) | unchanged on after: records, F1 triples / pairs "
        "| repaired: records, P / R / F1 triples | F1 pairs | lost | s |",
        "|---|---:|---|---|---:|---|---:|",
    ]
    for item in results:
        rt = item.repaired_triples
        repaired = (
            f"{item.repaired_records}, {rt.precision:.3f} / {rt.recall:.3f} / {rt.f1:.3f}"
            if not item.repair.startswith("failed")
            else "failed"
        )
        lines.append(
            f"| {item.case} | {item.before_triples.f1:.3f} | {item.unchanged_records}, "
            f"{item.unchanged_triples.f1:.3f} / {item.unchanged_pairs.f1:.3f} | {repaired} | "
            f"{item.repaired_pairs.f1:.3f} | {', '.join(item.lost_fields) or '-'} | "
            f"{item.seconds:.2f} |"
        )
    lines.append(
        f"| **macro** | {_macro(results, 'before_triples'):.3f} | "
        f"{_macro(results, 'unchanged_triples'):.3f} / {_macro(results, 'unchanged_pairs'):.3f} "
        f"| F1 {_macro(results, 'repaired_triples'):.3f} | "
        f"{_macro(results, 'repaired_pairs'):.3f} | | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every case, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the drift/ directory")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print repair notes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cases = sorted(path for path in args.data.iterdir() if (path / "truth.json").exists())
    results = [run_case(path) for path in cases]
    print(table(results))  # a CLI's output
    for item in results:
        print(f"\n{item.case}: built {item.built}; repair {item.repair[:400]}")
        if args.verbose:
            for note in item.notes:
                print(f"  - {note[:300]}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "measured": datetime.now(UTC).isoformat(timespec="seconds"),
            "cases": [asdict(item) for item in results],
        }
        args.out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
