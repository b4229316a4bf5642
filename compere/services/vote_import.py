"""Importing a vote log: ``compere import comparisons FILE`` and ``POST /comparisons/import``.

Two kinds of file, each as JSON Lines or CSV, told apart by their fields:

- ``compere``: what ``compere export comparisons`` writes. Entities are matched on
  ``entity1_external_id`` / ``entity2_external_id`` (the external id the entity export
  gives them); ``verdict``, ``category``, ``voter`` (stored as written: it is the id the
  source stored) and ``served`` are kept, so export then import into an empty database
  replays every vote with what it said and who cast it.
- ``arena``: the public battle format, ``model_a``, ``model_b``, ``winner`` (``model_a``,
  ``model_b``, ``tie``, ``tie (bothbad)``: a ``both_bad`` verdict), optional ``judge``,
  ``tstamp`` and ``category``; models are matched on the names of live entities and
  created on first sight. A judge becomes the voter a live vote's ``voter`` field makes
  (``options.judge_voter``: a keyed hash, never the judge's own id).

Votes with a voter are weighed by the voter's record (``TRUST_MODE``) exactly as live
votes are, and update it.

The file streams through in bounded memory: lines are read one at a time, votes stored in
batches (one transaction each, see :mod:`compere.storage.vote_import`), and each batch
commits the run's position with it, so a re-run or a resumed run skips exactly what is
stored. Bad lines are rejected by line number; after ``max_rejected`` of them the import
stops before the next one. The summary is filled in as batches commit, so a caller can
report it even when the import ends early (an error, Ctrl-C).
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from compere.domain.bayes import Prior
from compere.domain.inputs import Category, ExternalId, Name, VoterName, issue_message
from compere.domain.trust import POLICIES, TrustPolicy
from compere.services.transfer import ANONYMOUS_JUDGE, Rejected
from compere.storage.database import Database
from compere.storage.vote_import import (
    BatchResult,
    ImportedVote,
    Position,
    RunMoved,
    apply_vote_batch,
    get_run,
)

KINDS = ("compere", "arena")
# Lines longer than this stop the import (the HTTP body reader cannot return more at once).
MAX_LINE_BYTES = 65_536
# A CSV record may span lines (quoted line breaks), but not more than this many.
MAX_RECORD_LINES = 100
# Rejections kept for the report (all are counted).
REJECTIONS_KEPT = 100
# Key -> entity id cache across batches; cleared when it grows past this (a large board).
_KNOWN_LIMIT = 100_000
# Lines read before the first record, for the file's fingerprint.
_PEEK_LINES = 100

# winner -> (model_a's score, the verdict)
ARENA_WINNERS = {
    "model_a": (1.0, "win"),
    "model_b": (0.0, "win"),
    "tie": (0.5, "tie"),
    "tie (bothbad)": (0.5, "both_bad"),
}
# What comparisons.voter holds (compere.infra.voters): a user, a key, or a keyed hash.
_STORED_VOTER = re.compile(r"(?:[uk]:[1-9][0-9]{0,18}|a:[0-9a-f]{40})")
_SERVED = {True: True, False: False, "true": True, "false": False, "True": True, "False": False}
_ARENA_FIELDS = ("model_a", "model_b", "winner")
_COMPERE_FIELDS = (
    "entity1_id",
    "entity2_id",
    "selected_entity_id",
    "entity1_external_id",
    "entity2_external_id",
)
# tstamp bounds: after 1970 and before the year 10000.
_MAX_TSTAMP = 253_402_300_799.0

_NAME: TypeAdapter[str] = TypeAdapter(Name)
_EXTERNAL_ID: TypeAdapter[str] = TypeAdapter(ExternalId)
_CATEGORY: TypeAdapter[str] = TypeAdapter(Category)
_JUDGE: TypeAdapter[str] = TypeAdapter(VoterName)


class VoteFileError(ValueError):
    """The file cannot be imported at all (unknown fields, a different file under the
    same source): nothing was stored."""


@dataclass(slots=True)
class VoteImportSummary:
    """What an import did; filled in as each batch commits."""

    kind: str | None = None
    source: str | None = None
    stored: int = 0
    already_imported: int = 0  # records a previous run of this file stored (or rejected)
    rejected_count: int = 0
    rejected: list[Rejected] = field(default_factory=list)  # the first REJECTIONS_KEPT
    entities_created: int = 0
    lines_done: int = 0  # every line up to here is stored, rejected or was already done
    stopped_line: int | None = None  # the line the import stopped before, when it stopped early
    stopped: str | None = None  # why it stopped early; None when the file was read to its end

    @property
    def complete(self) -> bool:
        return self.stopped is None

    def reject(self, line: int, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < REJECTIONS_KEPT:
            self.rejected.append(Rejected(line, reason))


@dataclass(frozen=True, slots=True)
class VoteImportOptions:
    fmt: str  # "jsonl" or "csv"
    k_factor: float
    rating: float
    prior: Prior
    max_rejected: int = 100  # stop before rejecting one more; 0: stop at the first bad line
    source: str | None = None  # the run's name; default: a digest of the first record
    batch_size: int = 2000
    project_id: int = 1
    trust: TrustPolicy = POLICIES["off"]  # TRUST_MODE: how voters' records weigh their votes
    # An arena judge -> the stored voter id (what a vote's ``voter`` field stores); None:
    # judges are not kept (no key to hash them with).
    judge_voter: Callable[[str], str] | None = None


class _Lines:
    """The file's lines, counted, with a running digest of the bytes read so far."""

    def __init__(self, chunks: AsyncIterator[bytes], progress: Callable[[int], object] | None) -> None:
        self._chunks = chunks
        self._progress = progress
        self._peeked: list[bytes] = []
        self.number = 0
        self.bytes = 0
        self._hash = hashlib.sha256()
        self._check: tuple[int, str] | None = None

    async def peek_fingerprint(self, fmt: str) -> str | None:
        """A digest of the file's first record (CSV: the header and the line after it),
        read ahead without consuming it; None for a file with nothing in it."""
        wanted = 2 if fmt == "csv" else 1
        filled = 0
        async for raw in self._chunks:
            self._peeked.append(raw)
            if raw.strip():
                filled += 1
            if filled >= wanted or len(self._peeked) >= _PEEK_LINES:
                break
        if not filled:
            return None
        return "sha256:" + hashlib.sha256(b"".join(self._peeked)).hexdigest()

    def expect(self, lines: int, digest: str) -> None:
        """Raise :class:`VoteFileError` unless the first ``lines`` lines digest to ``digest``."""
        self._check = (lines, digest)

    def position(self) -> Position:
        return Position(self.number, self.bytes, self._hash.hexdigest())

    def mark(self) -> tuple[int, int, Any]:
        return self.number, self.bytes, self._hash.copy()

    @staticmethod
    def position_at(mark: tuple[int, int, Any]) -> Position:
        return Position(mark[0], mark[1], mark[2].hexdigest())

    async def next(self) -> bytes | None:
        if self._peeked:
            raw = self._peeked.pop(0)
        else:
            try:
                raw = await anext(self._chunks)
            except StopAsyncIteration:
                if self._check is not None and self.number < self._check[0]:
                    raise VoteFileError(
                        f"this file has {self.number} lines, but an earlier import of a file that begins "
                        f"the same way stored up to line {self._check[0]}: it is not the same file "
                        "(import it under a name of its own with source)"
                    ) from None
                return None
        self.number += 1
        self.bytes += len(raw)
        self._hash.update(raw)
        if self._progress is not None:
            self._progress(len(raw))
        if self._check is not None and self.number == self._check[0]:
            if self._hash.hexdigest() != self._check[1]:
                raise VoteFileError(
                    f"an earlier import of a file that begins the same way stored up to line {self.number}, "
                    "but this file differs from it before that line: it is not the same file (import it "
                    "under a name of its own with source)"
                )
            self._check = None
        return raw


class _LineTooLong(Exception):
    pass


async def file_lines(read_line: Callable[[], Any]) -> AsyncIterator[bytes]:
    """Lines from ``read_line()`` (sync or async, returning b"" at the end) as an async
    iterator; a line longer than :data:`MAX_LINE_BYTES` stops the import there."""
    while True:
        raw = read_line()
        if not isinstance(raw, bytes):
            try:
                raw = await raw
            except ValueError:  # aiohttp's body reader: a line over its buffer
                raise _LineTooLong from None
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            raise _LineTooLong
        yield raw


def _text(raw: bytes, first: bool) -> str:
    if first and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadLine(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") from None


class _BadLine(Exception):
    pass


def _kind_of(fields: Any) -> str:
    if all(name in fields for name in _ARENA_FIELDS):
        return "arena"
    if all(name in fields for name in _COMPERE_FIELDS):
        return "compere"
    if "entity1_id" in fields and "entity1_external_id" not in fields:
        raise VoteFileError(
            "this comparisons export has no entity1_external_id / entity2_external_id columns "
            "(it was written by an older Compere): export it again to import it"
        )
    raise VoteFileError(
        "not a vote log: an arena file needs the fields model_a, model_b and winner; a Compere "
        "comparisons export needs " + ", ".join(_COMPERE_FIELDS)
    )


def _vote(
    kind: str, record: dict[str, Any], names_seen: set[str], options: VoteImportOptions
) -> ImportedVote:
    if kind == "arena":
        return _arena_vote(record, names_seen, options.judge_voter)
    return _compere_vote(record)


def _arena_vote(
    record: dict[str, Any], names_seen: set[str], judge_voter: Callable[[str], str] | None
) -> ImportedVote:
    a = _checked_name(record.get("model_a"), "model_a", names_seen)
    b = _checked_name(record.get("model_b"), "model_b", names_seen)
    if a == b:
        raise _BadLine("model_a and model_b are the same model")
    winner = record.get("winner")
    outcome = ARENA_WINNERS.get(winner) if isinstance(winner, str) else None
    if outcome is None:
        raise _BadLine("winner must be one of " + ", ".join(ARENA_WINNERS))
    judge = record.get("judge")
    if isinstance(judge, int) and not isinstance(judge, bool):
        judge = str(judge)
    if judge is not None and not isinstance(judge, str):
        raise _BadLine("judge must be a string")
    voter = None
    if judge and judge != ANONYMOUS_JUDGE:
        judge = _checked(_JUDGE, judge, "judge")
        voter = judge_voter(judge) if judge_voter is not None else None
    score, verdict = outcome
    return ImportedVote(
        a,
        b,
        score,
        _tstamp(record.get("tstamp")),
        verdict=verdict,
        category=_category(record.get("category")),
        voter=voter,
    )


def _checked(adapter: TypeAdapter[str], value: Any, where: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise _BadLine(f"{where}: {issue_message(exc.errors(include_url=False)[0])}") from None


def _category(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _BadLine("category must be a text")
    return _checked(_CATEGORY, value, "category")


def _checked_name(value: Any, where: str, names_seen: set[str]) -> str:
    if isinstance(value, str) and value in names_seen:
        return value
    if not isinstance(value, str):
        raise _BadLine(f"{where} must be a model name (text)")
    name = _checked(_NAME, value, where)
    if name == value and len(names_seen) < _KNOWN_LIMIT:
        names_seen.add(name)
    return name


def _tstamp(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise _BadLine("tstamp must be Unix seconds (a number)") from None
    if isinstance(value, bool) or not math.isfinite(seconds) or not 0 <= seconds <= _MAX_TSTAMP:
        raise _BadLine("tstamp must be Unix seconds between 1970 and 9999")
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def _compere_vote(record: dict[str, Any]) -> ImportedVote:
    key1 = _external_id(record.get("entity1_external_id"), "entity1_external_id")
    key2 = _external_id(record.get("entity2_external_id"), "entity2_external_id")
    if key1 == key2:
        raise _BadLine("entity1_external_id and entity2_external_id are the same entity")
    id1 = _integer(record.get("entity1_id"), "entity1_id")
    id2 = _integer(record.get("entity2_id"), "entity2_id")
    selected = record.get("selected_entity_id")
    if selected is None or selected == "":
        score = 0.5
    else:
        winner = _integer(selected, "selected_entity_id")
        if winner not in (id1, id2) or id1 == id2:
            raise _BadLine("selected_entity_id must be entity1_id, entity2_id or empty (a tie)")
        score = 1.0 if winner == id1 else 0.0
    verdict = record.get("verdict") or None
    if verdict is not None and verdict not in ("win", "tie", "both_bad"):
        raise _BadLine("verdict must be win, tie, both_bad or empty")
    if verdict is not None and (verdict == "win") != (score != 0.5):
        raise _BadLine("verdict win needs selected_entity_id; tie and both_bad need it empty")
    voter = record.get("voter") or None
    if voter is not None and (not isinstance(voter, str) or not _STORED_VOTER.fullmatch(voter)):
        raise _BadLine("voter must be a stored voter id (u:<id>, k:<id> or a:<40 hex digits>) or empty")
    probability = record.get("selection_probability")
    if probability is not None and probability != "":
        try:
            probability = float(probability)
        except (TypeError, ValueError):
            raise _BadLine("selection_probability must be a number from 0 to 1") from None
        if not 0.0 <= probability <= 1.0:
            raise _BadLine("selection_probability must be a number from 0 to 1")
    else:
        probability = None
    strategy = record.get("strategy") or None
    if strategy is not None and (not isinstance(strategy, str) or len(strategy) > 50 or "\x00" in strategy):
        raise _BadLine("strategy must be a short text")
    # Older exports have no served column: only served pairs had a strategy then.
    given = record.get("served", "")
    if given is None or given == "":
        served: bool | None = strategy is not None
    else:
        served = _SERVED.get(given) if isinstance(given, bool | str) else None
    if served is None:
        raise _BadLine("served must be true, false or empty")
    return ImportedVote(
        key1,
        key2,
        score,
        _created_at(record.get("created_at")),
        strategy,
        probability,
        verdict=verdict,
        category=_category(record.get("category")),
        voter=voter,
        served=served,
    )


def _external_id(value: Any, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _BadLine(f"{where} is required (text)")
    try:
        return _EXTERNAL_ID.validate_python(value)
    except ValidationError as exc:
        raise _BadLine(f"{where}: {issue_message(exc.errors(include_url=False)[0])}") from None


def _integer(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value) < 20:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _BadLine(f"{where} must be a whole number")


def _created_at(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        raise _BadLine("created_at is required (an ISO 8601 time)")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _BadLine("created_at must be an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class _Records:
    """The file's records as (first line, last line, fields) or a rejection reason."""

    def __init__(self, lines: _Lines, fmt: str) -> None:
        self.lines = lines
        self.fmt = fmt
        self.header: list[str] | None = None

    async def next(self) -> tuple[int, dict[str, Any] | str] | None:
        """(the record's first line, its fields or why it is rejected); None at the end.

        Blank lines are passed over. The lines object has read exactly to the record's end.
        """
        while True:
            raw = await self.lines.next()
            if raw is None:
                return None
            line = self.lines.number
            if not raw.strip():
                continue
            if self.fmt == "jsonl":
                return line, self._json(raw, line)
            record = await self._csv(raw, line)
            if record is not None:
                return line, record

    def _json(self, raw: bytes, line: int) -> dict[str, Any] | str:
        if line == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            try:
                _text(raw, False)
            except _BadLine as bad:
                return str(bad)
            return f"not valid JSON ({exc.args[0].split(':')[0]})"
        if not isinstance(value, dict):
            return "each line must be a JSON object"
        return value

    async def _csv(self, raw: bytes, line: int) -> dict[str, Any] | str | None:
        parts = [raw]
        while sum(part.count(b'"') for part in parts) % 2:  # a quoted line break: read on
            if len(parts) >= MAX_RECORD_LINES:
                return f"a quoted field is not closed within {MAX_RECORD_LINES} lines"
            more = await self.lines.next()
            if more is None:
                break
            parts.append(more)
        try:
            text = "".join(_text(part, line == 1 and i == 0) for i, part in enumerate(parts))
            cells = next(csv.reader([text]))
        except _BadLine as exc:
            return str(exc)
        except csv.Error as exc:
            return f"not valid CSV ({exc})"
        if self.header is None:
            self.header = [cell.strip() for cell in cells]
            return None
        if len(cells) != len(self.header):
            return f"has {len(cells)} fields, the header has {len(self.header)}"
        return dict(zip(self.header, cells, strict=True))


async def import_votes(
    db: Database,
    chunks: AsyncIterator[bytes],
    options: VoteImportOptions,
    summary: VoteImportSummary,
    progress: Callable[[int], object] | None = None,
) -> VoteImportSummary:
    """Import a vote log read line by line from ``chunks`` (raw lines, with their endings).

    Fills ``summary`` as batches commit and returns it. Raises :class:`VoteFileError`
    (nothing stored by this call) when the file is not a vote log or differs from the
    file an earlier run under the same source read; stops early (``summary.stopped``)
    after ``options.max_rejected`` rejected lines, at a line too long to read, or when
    another import of the same file moved ahead.
    """
    lines = _Lines(chunks, progress)
    try:
        fingerprint = await lines.peek_fingerprint(options.fmt)
    except _LineTooLong:
        summary.stopped_line, summary.stopped = 1, f"line 1 is longer than {MAX_LINE_BYTES} bytes"
        return summary
    if fingerprint is None:
        return summary  # an empty file: nothing to do
    source = options.source or fingerprint
    summary.source = source
    run = await get_run(db, options.project_id, source)
    done = 0
    if run is not None and run.lines_done:
        done = summary.lines_done = run.lines_done
        lines.expect(run.lines_done, run.prefix_digest)
    records = _Records(lines, options.fmt)
    importer = _BatchWriter(db, options, summary, source, done)
    names_seen: set[str] = set()
    mark = lines.mark()
    try:
        while True:
            mark = lines.mark()
            item = await records.next()
            if item is None:
                break
            line, record = item
            if isinstance(record, dict) and summary.kind is None:
                summary.kind = _kind_of(record)
                if run is not None and run.kind != summary.kind:
                    raise VoteFileError(f"an earlier import under this source read a {run.kind} file")
            if lines.number <= done:
                summary.already_imported += 1
                continue
            if isinstance(record, str):
                reason = record
            else:
                try:
                    importer.add(replace(_vote(summary.kind or "", record, names_seen, options), line=line))
                    reason = ""
                except _BadLine as exc:
                    reason = str(exc)
            if reason:
                if summary.rejected_count >= options.max_rejected:
                    await importer.flush(lines.position_at(mark))
                    summary.stopped_line = line
                    summary.stopped = (
                        f"line {line}: {reason}"
                        if options.max_rejected == 0
                        else f"more than {options.max_rejected} lines rejected; the last at line {line}: {reason}"
                    )
                    return summary
                summary.reject(line, reason)
                importer.rejected += 1
            if importer.full():
                await importer.flush(lines.position())
        await importer.flush(lines.position())
    except _LineTooLong:
        await importer.flush(lines.position_at(mark))
        summary.stopped_line = lines.number + 1
        summary.stopped = f"line {lines.number + 1} is longer than {MAX_LINE_BYTES} bytes"
    except RunMoved as exc:
        summary.stopped = str(exc)
    return summary


class _BatchWriter:
    def __init__(
        self, db: Database, options: VoteImportOptions, summary: VoteImportSummary, source: str, done: int
    ) -> None:
        self.db = db
        self.options = options
        self.summary = summary
        self.source = source
        self.votes: list[ImportedVote] = []
        self.rejected = 0
        self.done = done  # the run's lines_done as this import last saw it
        self.known: dict[str, int] = {}

    def add(self, vote: ImportedVote) -> None:
        self.votes.append(vote)

    def full(self) -> bool:
        return len(self.votes) >= self.options.batch_size

    async def flush(self, position: Position) -> None:
        if position.lines <= self.done:
            return
        if self.summary.kind is None:
            return  # no record read yet (blank lines, a header, bad lines): no run to record
        if len(self.known) > _KNOWN_LIMIT:
            self.known.clear()
        batch = asyncio.ensure_future(
            apply_vote_batch(
                self.db,
                project_id=self.options.project_id,
                source=self.source,
                kind=self.summary.kind or "arena",
                match_on="name" if self.summary.kind == "arena" else "external_id",
                expected_lines=self.done,
                votes=self.votes,
                position=position,
                rejected=self.rejected,
                known=self.known,
                k_factor=self.options.k_factor,
                rating=self.options.rating,
                prior=self.options.prior,
                trust=self.options.trust,
            )
        )
        try:
            result = await asyncio.shield(batch)
        except asyncio.CancelledError:
            # Interrupted (Ctrl-C, a closed connection) while a batch was in flight: let
            # it commit or roll back, so the summary says exactly what is stored.
            try:
                result = await batch
            except Exception:
                raise asyncio.CancelledError from None
            self._count(result, position)
            raise
        self._count(result, position)

    def _count(self, result: BatchResult, position: Position) -> None:
        self.summary.stored += result.stored
        self.summary.entities_created += result.entities_created
        self.summary.lines_done = self.done = position.lines
        self.votes = []
        self.rejected = 0
