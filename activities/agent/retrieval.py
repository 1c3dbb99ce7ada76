"""Runbooks and past incidents, retrieved for a failure by TF-IDF similarity.

Runbooks are markdown files with YAML front matter (``runbooks/*.md``)::

    ---
    id: rate-limiting                       # stable: plans cite it
    title: Rate limiting (HTTP 429 Too Many Requests)
    applies_to:
      error_classes: [rate_limited]         # the fetch layer's classes (and a few of ours)
      error_types: [FetchHttpStatusError]   # ApplicationError types
      http_statuses: [429]
      actions: [retry_with_backoff, tune]   # what the runbook recommends, best first
    ---

Retrieval ranks runbooks and incidents together in one TF-IDF space (scikit-learn) by
cosine similarity to a query made of the failure's error type, class and message, and adds
small bonuses for exact matches of the front matter (error class, error type, HTTP status)
and, for incidents, of the pipeline/task/source labels. Everything is local: no embedding
model, no network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped,unused-ignore]
from sklearn.metrics.pairwise import linear_kernel  # type: ignore[import-untyped,unused-ignore]

from activities.agent.errors import RunbookError
from models.incidents import Incident
from models.remediation import RemediationAction

DEFAULT_RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
"""The runbooks shipped with Mendline (``runbooks/`` at the repository root)."""

CLASS_BONUS = 0.35
TYPE_BONUS = 0.25
STATUS_BONUS = 0.25
LABEL_BONUS = 0.1
MIN_RUNBOOK_SCORE = 0.05
MIN_INCIDENT_SCORE = 0.12

_FRONT_MATTER = re.compile(r"\A---\s*\n(?P<meta>.*?)\n---\s*\n(?P<body>.*)\Z", re.S)
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Runbook:
    """One runbook file.

    Attributes:
        id: Stable id (front matter), cited by plans.
        title: Its title.
        error_classes: Error classes it applies to.
        error_types: Error types it applies to.
        http_statuses: HTTP statuses it applies to.
        actions: Actions it recommends, best first.
        body: The markdown after the front matter.
        path: Where it was read from.
    """

    id: str
    title: str
    error_classes: tuple[str, ...]
    error_types: tuple[str, ...]
    http_statuses: tuple[int, ...]
    actions: tuple[RemediationAction, ...]
    body: str
    path: Path

    def excerpt(self, chars: int = 700) -> str:
        """The body without its heading, cut at ``chars`` (for prompts)."""
        text = re.sub(r"^# .*\n", "", self.body.strip()).strip()
        return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


@dataclass(frozen=True)
class RunbookHit:
    """A retrieved runbook and its score (higher is closer)."""

    runbook: Runbook
    score: float


@dataclass(frozen=True)
class IncidentHit:
    """A retrieved past incident and its score."""

    incident: Incident
    score: float


@dataclass(frozen=True)
class Retrieved:
    """What retrieval found for a failure, best first."""

    runbooks: list[RunbookHit]
    incidents: list[IncidentHit]

    @property
    def runbook_ids(self) -> list[str]:
        return [hit.runbook.id for hit in self.runbooks]

    @property
    def incident_ids(self) -> list[int]:
        return [hit.incident.id for hit in self.incidents]


@dataclass(frozen=True)
class Query:
    """What retrieval looks for.

    Attributes:
        text: Free text (error type, class, redacted message, task type).
        error_class: The failure's class, for the exact-match bonus.
        error_type: The failure's type, for the exact-match bonus.
        status: The HTTP status, when there is one.
        labels: Pipeline/task/source names, matched against incident labels.
    """

    text: str
    error_class: str | None = None
    error_type: str | None = None
    status: int | None = None
    labels: tuple[str, ...] = ()


def _list(meta: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = meta.get(key) or []
    if not isinstance(value, list):
        raise RunbookError(path, f"applies_to.{key} must be a list, got {value!r:.60}")
    return value


def parse_runbook(text: str, path: Path) -> Runbook:
    """Parse one runbook file's text.

    Raises:
        RunbookError: No front matter, or a field is missing or of the wrong kind.
    """
    match = _FRONT_MATTER.match(text)
    if match is None:
        raise RunbookError(path, "no front matter: start the file with a '---' YAML block")
    try:
        meta = yaml.safe_load(match.group("meta")) or {}
    except yaml.YAMLError as exc:
        raise RunbookError(path, f"front matter is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise RunbookError(path, "front matter must be a mapping")
    runbook_id, title = meta.get("id"), meta.get("title")
    if not isinstance(runbook_id, str) or not _ID.match(runbook_id):
        raise RunbookError(
            path, f"id must be lowercase letters, digits and '-', got {runbook_id!r}"
        )
    if not isinstance(title, str) or not title.strip():
        raise RunbookError(path, "title is missing")
    applies = meta.get("applies_to") or {}
    if not isinstance(applies, dict):
        raise RunbookError(path, "applies_to must be a mapping")
    actions = []
    for name in _list(applies, "actions", path):
        try:
            actions.append(RemediationAction(name))
        except ValueError:
            allowed = ", ".join(a.value for a in RemediationAction)
            raise RunbookError(path, f"unknown action {name!r} (one of: {allowed})") from None
    statuses = _list(applies, "http_statuses", path)
    if not all(isinstance(s, int) for s in statuses):
        raise RunbookError(path, "applies_to.http_statuses must be whole numbers")
    return Runbook(
        id=runbook_id,
        title=title.strip(),
        error_classes=tuple(str(c) for c in _list(applies, "error_classes", path)),
        error_types=tuple(str(t) for t in _list(applies, "error_types", path)),
        http_statuses=tuple(statuses),
        actions=tuple(actions),
        body=match.group("body"),
        path=path,
    )


_cache: dict[Path, tuple[tuple[tuple[str, float], ...], list[Runbook]]] = {}


def load_runbooks(directory: Path | None = None) -> list[Runbook]:
    """Every ``*.md`` runbook in ``directory`` (default: Mendline's), sorted by id.

    Parsed files are cached until a file in the directory changes.

    Raises:
        RunbookError: A file is malformed, or two files share an id.
    """
    directory = (directory or DEFAULT_RUNBOOKS).resolve()
    if not directory.is_dir():
        raise RunbookError(directory, "not a directory (set MENDLINE_RUNBOOKS)")
    files = sorted(directory.glob("*.md"))
    stamp = tuple((f.name, f.stat().st_mtime) for f in files)
    cached = _cache.get(directory)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    runbooks: dict[str, Runbook] = {}
    for file in files:
        runbook = parse_runbook(file.read_text(encoding="utf-8"), file)
        if runbook.id in runbooks:
            raise RunbookError(
                file, f"id {runbook.id!r} is also used by {runbooks[runbook.id].path}"
            )
        runbooks[runbook.id] = runbook
    result = [runbooks[key] for key in sorted(runbooks)]
    _cache[directory] = (stamp, result)
    return result


def _words(text: str) -> str:
    """Text plus its CamelCase identifiers split into words (``FetchTimeoutError`` also
    says ``fetch timeout error``), so error types match prose."""
    split = [_CAMEL.sub(" ", token) for token in re.findall(r"[A-Za-z][A-Za-z0-9]*", text)]
    return f"{text} {' '.join(s for s in split if ' ' in s)}"


def _runbook_document(runbook: Runbook) -> str:
    meta = " ".join(
        [*runbook.error_classes, *runbook.error_types, *map(str, runbook.http_statuses)]
    )
    return _words(f"{runbook.title} {runbook.title} {meta} {runbook.body}")


def _incident_document(incident: Incident) -> str:
    labels = " ".join(incident.labels.values())
    return _words(
        f"{incident.rule} {incident.metric} {incident.severity} {labels} {incident.summary} "
        f"{incident.resolution or ''}"
    )


def retrieve(
    query: Query,
    runbooks: Sequence[Runbook],
    incidents: Sequence[Incident] = (),
    *,
    k_runbooks: int = 3,
    k_incidents: int = 3,
) -> Retrieved:
    """The runbooks and incidents closest to ``query``, best first.

    Args:
        query: What failed.
        runbooks: The runbooks to rank.
        incidents: Past incidents to rank (already redacted or not: only scores leave here).
        k_runbooks: Most runbooks returned.
        k_incidents: Most incidents returned.
    """
    documents = [_runbook_document(r) for r in runbooks] + [
        _incident_document(i) for i in incidents
    ]
    if not documents:
        return Retrieved(runbooks=[], incidents=[])
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, lowercase=True)
    try:
        matrix = vectorizer.fit_transform(documents)
    except ValueError:  # every document is empty or stop words only
        return Retrieved(runbooks=[], incidents=[])
    similarities = linear_kernel(vectorizer.transform([_words(query.text)]), matrix)[0]

    runbook_hits = []
    for runbook, similarity in zip(runbooks, similarities[: len(runbooks)], strict=True):
        score = float(similarity)
        if query.error_class and query.error_class in runbook.error_classes:
            score += CLASS_BONUS
        if query.error_type and query.error_type in runbook.error_types:
            score += TYPE_BONUS
        if query.status is not None and query.status in runbook.http_statuses:
            score += STATUS_BONUS
        if score >= MIN_RUNBOOK_SCORE:
            runbook_hits.append(RunbookHit(runbook, round(score, 4)))
    runbook_hits.sort(key=lambda hit: (-hit.score, hit.runbook.id))

    incident_hits = []
    wanted = {label for label in query.labels if label}
    for incident, similarity in zip(incidents, similarities[len(runbooks) :], strict=True):
        score = float(similarity)
        score += LABEL_BONUS * len(wanted & set(incident.labels.values()))
        if score >= MIN_INCIDENT_SCORE:
            incident_hits.append(IncidentHit(incident, round(score, 4)))
    incident_hits.sort(key=lambda hit: (-hit.score, -hit.incident.id))
    return Retrieved(runbooks=runbook_hits[:k_runbooks], incidents=incident_hits[:k_incidents])
