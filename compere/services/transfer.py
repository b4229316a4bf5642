"""Bulk transfer formats: entity files to import, and export rows as JSON Lines or CSV.

Shared by the CLI (``compere import`` / ``compere export``) and the HTTP export, so a
file written by one reads the same as a download from the other. Everything here is
streaming: records are parsed and rows encoded one at a time.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import hmac
import io
import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from compere.domain.bayes import Z95, Prior
from compere.domain.inputs import EntityCreate, issue_message
from compere.storage.bulk import import_entities, refresh_statistics
from compere.storage.database import Database
from compere.storage.rows import verdict_of
from compere.storage.timestamps import as_datetime

FORMATS = ("jsonl", "csv")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}

# Storage internals that mean nothing outside: the soft-delete marker, the random
# sampling key and the pair token's nonce.
# project_id: an export is of one project, named by the route it came from.
_INTERNAL = {"deleted_at", "random_key", "pair_token_id", "project_id", "vote_weight"}
# Model columns whose mean and spread give a 95% interval, when the schema has them.
_SCORE_PAIRS = (("score", "uncertainty"),)
# Stored column -> the name the API (and so every export) uses for it.
_PUBLIC_NAMES = {"mu": "score", "sigma": "uncertainty"}


class ImportFormatError(ValueError):
    """The import file cannot be read as the format it claims to be.

    ``line`` is set when reading stopped at a line the reader cannot get past.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


class ImportStopped(ImportFormatError):
    """Reading stopped at ``line``: nothing from that line on can be read."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason, line)
        self.line: int = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


# Imports that create at least this many entities refresh the planner's statistics.
ANALYZE_AFTER = 1_000
# Exports name an entity that has no external id of its own after its id and creation
# time (``compere:5@2026-01-31T12:00:00.123456Z``), so every exported row can be
# imported, and imported again without duplicates. The time keeps entity 5 of one
# database apart from entity 5 of another when exports are merged; the API refuses the
# prefix for new entities, so no entity takes a name an export gives another.
GENERATED_ID_PREFIX = "compere:"
# Columns an entity file must have; without them no row could be imported.
REQUIRED_COLUMNS = ("external_id", "name")


def guess_format(filename: str) -> str:
    """``csv`` for ``*.csv``, otherwise JSON Lines."""
    return "csv" if filename.lower().endswith(".csv") else "jsonl"


def text_lines(stream: Iterable[bytes], progress: Callable[[int], object] | None = None) -> Iterator[str]:
    """Decode a byte stream line by line, so a bad byte is reported by its line number.

    A leading UTF-8 byte order mark is dropped; ``progress`` gets the bytes of each line.
    """
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportStopped(number, _not_utf8(raw, exc.start)) from None
        if progress is not None:
            progress(len(raw))
        yield text


def check_utf8(data: bytes) -> None:
    """Raise :class:`ImportStopped` at the line of the first byte that is not UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        raise ImportStopped(
            data.count(b"\n", 0, start) + 1, _not_utf8(data[start:], exc.start - start)
        ) from None


def _not_utf8(line: bytes, offset: int) -> str:
    column = len(line[:offset].decode("utf-8", errors="replace")) + 1
    return f"not valid UTF-8 (byte 0x{line[offset]:02x} at character {column}); save the file as UTF-8"


def read_entity_records(lines: Iterable[str], fmt: str) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """Yield ``(line, record)`` for each entity in the file, or ``(line, Rejected)``.

    ``lines`` are the file's lines with their line endings (see :func:`text_lines`).
    Fields: ``external_id`` (required: it is what makes re-imports safe), ``name``,
    ``description``, ``image_urls``, ``attributes`` (and in JSON Lines ``prompt``). In CSV,
    ``image_urls`` is a JSON array or URLs separated by spaces and ``attributes`` a JSON
    object; in JSON Lines they are a list and an object. Records are validated by the same
    rules as ``POST /entities/``; an external id seen earlier in the same file is
    rejected with that line's number. A CSV header without the required columns
    raises :class:`ImportFormatError`; text that cannot be read at all stops the file
    with :class:`ImportStopped`.
    """
    seen: dict[str, int] = {}
    for line, record in _parsed(lines, fmt):
        if isinstance(record, dict):
            first = seen.setdefault(record["external_id"], line)
            if first != line:
                record = Rejected(
                    line, f"external_id {record['external_id']!r} is a duplicate of line {first}"
                )
        yield line, record


def _parsed(lines: Iterable[str], fmt: str) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    if fmt == "csv":
        yield from _csv_records(lines)
        return
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, Rejected(line, f"not valid JSON ({exc.msg})")
            continue
        except RecursionError:
            yield line, Rejected(line, "not valid JSON (nested too deeply)")
            continue
        except ValueError:
            # A number the decoder refuses to convert (over 4,300 digits): a file made
            # to cost CPU, not a typo on one line.
            raise ImportFormatError("a number in this line has too many digits", line) from None
        if not isinstance(raw, dict):
            yield line, Rejected(line, "each line must be a JSON object")
            continue
        yield line, _validated(line, raw)


def _csv_records(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames
        if header is None:
            raise ImportFormatError(
                "the CSV file needs a header row with at least " + " and ".join(REQUIRED_COLUMNS)
            )
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise ImportFormatError(
                f"the CSV header row has no {' and no '.join(missing)} column "
                f"(it needs {' and '.join(REQUIRED_COLUMNS)}; found: {', '.join(header) or 'nothing'})"
            )
        for row in reader:
            line = reader.line_num
            raw: dict[str, Any] = {
                "external_id": row.get("external_id"),
                "name": row.get("name"),
                "description": row.get("description") or "",
                "image_urls": _csv_urls((row.get("image_urls") or "").strip()),
                "attributes": _csv_json((row.get("attributes") or "").strip() or "{}"),
            }
            yield line, _validated(line, raw)
    except csv.Error as exc:
        # DictReader's own line_num is only updated after a good row; its reader's is
        # the line being parsed.
        raise ImportStopped(reader.reader.line_num, f"not valid CSV ({exc})") from None


def _csv_urls(text: str) -> Any:
    if text.startswith("["):
        return _csv_json(text)
    return text.split()


def _csv_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or a number too long to convert
        return text  # rejected by validation with a clear message


def _validated(line: int, raw: dict[str, Any]) -> dict[str, Any] | Rejected:
    external_id = raw.get("external_id")
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    if not isinstance(external_id, str) or not external_id.strip():
        return Rejected(line, "external_id is required (a non-empty string)")
    try:
        entity = EntityCreate.model_validate({**raw, "external_id": external_id})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        return Rejected(line, f"{where}: {issue_message(first)}")
    return entity.model_dump()


@dataclass(slots=True)
class ImportSummary:
    created: int = 0
    existing: int = 0  # records whose external_id was already there: left unchanged
    rejected: list[Rejected] = field(default_factory=list)
    # Why reading stopped early. Every record before it was stored or rejected (the
    # counts say which); nothing from there on was read.
    stopped: ImportFormatError | None = None


async def import_records(
    db: Database,
    project_id: int,
    records: Iterable[tuple[int, dict[str, Any] | Rejected]],
    *,
    rating: float,
    prior: Prior,
    batch_size: int,
    progress: Callable[[int], object] | None = None,
) -> ImportSummary:
    """Store parsed records in batches (one transaction each), skipping known external ids.

    When the file cannot be read further, the records read so far are still stored and
    the summary says where it stopped, so it reports exactly what was written.
    """
    summary = ImportSummary()

    async def store(batch: list[tuple[int, dict[str, Any] | Rejected]]) -> None:
        good = [record for _, record in batch if not isinstance(record, Rejected)]
        summary.rejected += [record for _, record in batch if isinstance(record, Rejected)]
        new = await import_entities(db, project_id, good, rating=rating, prior=prior) if good else 0
        summary.created += new
        summary.existing += len(good) - new
        if progress is not None:
            progress(len(batch))

    batch: list[tuple[int, dict[str, Any] | Rejected]] = []
    try:
        for item in records:
            batch.append(item)
            if len(batch) >= batch_size:
                await store(batch)
                batch = []
    except ImportFormatError as exc:
        summary.stopped = exc
    if batch:
        await store(batch)
    if summary.created >= ANALYZE_AFTER:
        # Without fresh statistics the planner takes a newly filled table for empty until
        # autovacuum gets to it (up to a minute of poor plans for every pair request).
        await refresh_statistics(db)
    return summary


def export_columns(columns: Sequence[str]) -> list[str]:
    """The columns an export shows: everything but storage internals, plus intervals."""
    shown = [_PUBLIC_NAMES.get(c, c) for c in columns if c not in _INTERNAL]
    for mean, spread in _SCORE_PAIRS:
        if mean in shown and spread in shown:
            shown += ["interval_low", "interval_high"]
            break
    return shown


def generated_external_id(entity_id: int, created_at: datetime) -> str:
    """What an export calls an entity that has no external id (stable for its lifetime)."""
    return f"{GENERATED_ID_PREFIX}{entity_id}@{created_at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


# What the comparison export adds to the table's columns: each entity's external id (a
# generated one for entities without), which is what ``import comparisons`` matches on.
ENTITY_KEYS = (("entity1_external_id", "entity1_id"), ("entity2_external_id", "entity2_id"))


def comparison_export_columns(columns: Sequence[str]) -> list[str]:
    """The columns of the comparison export: the table's, then the entities' external ids
    and ``served`` (the pair was served with a pair token, whose id stays internal: a voter's
    trust grows only on served pairs, so an import needs to know)."""
    served = ["served"] if "pair_token_id" in columns else []
    return export_columns(columns) + [key for key, _ in ENTITY_KEYS] + served


def export_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as storage streams it (plain values) as an export record: public names,
    95% intervals.

    An entity without an external id gets a generated one, so the file imports whole.
    """
    record = {_PUBLIC_NAMES.get(k, k): v for k, v in row.items() if k not in _INTERNAL}
    if "pair_token_id" in row and "entity1_external_id" in row:  # a comparison export
        record["served"] = row["pair_token_id"] is not None
    if "verdict" in record and record["verdict"] is None:  # a vote stored before verdicts existed
        record["verdict"] = verdict_of(None, record.get("selected_entity_id"))
    if "external_id" in record and record["external_id"] is None:
        record["external_id"] = generated_external_id(record["id"], record["created_at"])
    for key, entity_id in ENTITY_KEYS:
        if key in record:
            created_at = record.pop(key.replace("external_id", "created_at"))
            if record[key] is None:
                record[key] = generated_external_id(record[entity_id], as_datetime(created_at))
    for mean, spread in _SCORE_PAIRS:
        if record.get(mean) is not None and record.get(spread) is not None:
            record["interval_low"] = float(record[mean]) - Z95 * float(record[spread])
            record["interval_high"] = float(record[mean]) + Z95 * float(record[spread])
            break
    return record


class RowEncoder:
    """Encodes export records as JSON Lines or CSV text, header first for CSV."""

    def __init__(self, fmt: str, columns: Sequence[str]) -> None:
        if fmt not in FORMATS:
            raise ValueError(fmt)
        self.fmt = fmt
        self.columns = list(columns)
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")

    def header(self) -> str:
        if self.fmt != "csv":
            return ""
        return self._take(self.columns)

    def encode(self, rows: Iterable[dict[str, Any]]) -> str:
        """Text for a batch of rows (one line each)."""
        if self.fmt == "jsonl":
            return "".join(orjson.dumps(export_record(r)).decode() + "\n" for r in rows)
        for row in rows:
            record = export_record(row)
            self._csv.writerow([_csv_cell(record.get(c)) for c in self.columns])
        return self._drain()

    def _take(self, cells: Sequence[Any]) -> str:
        self._csv.writerow(cells)
        return self._drain()

    def _drain(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


# --- preference datasets -----------------------------------------------------------

PREFERENCE_FORMATS = ("dpo", "arena")


def response_text(name: str, description: str) -> str:
    """The text a preference record shows for an entity: its description, else its name."""
    return description if description.strip() else name


def judge_key(secret_key: str | None) -> bytes:
    """The key voter ids are hashed with: derived from SECRET_KEY (the same voter has the
    same id in every export), or random for this one export when there is no key."""
    if secret_key is None:
        return secrets.token_bytes(32)
    return hmac.new(secret_key.encode(), b"compere preference export judges", hashlib.sha256).digest()


# The judge of a vote cast without an account in an arena export: no one voter (an
# import reads it as a vote without a voter).
ANONYMOUS_JUDGE = "anonymous"


def judge_id(key: bytes, user_id: int | None) -> str:
    """A voter id no reader can reverse: keyed HMAC-SHA256 of the user id ("anonymous" if none)."""
    if user_id is None:
        return ANONYMOUS_JUDGE
    return hmac.new(key, f"compere-voter:{user_id}".encode(), hashlib.sha256).hexdigest()[:32]


def preference_record(
    row: dict[str, Any], fmt: str, *, keep_ties: bool, judge_key: bytes
) -> dict[str, Any] | None:
    """One vote (with both entities) as a ``dpo`` or ``arena`` record, or None to skip it.

    ``dpo``: ``{prompt, chosen, rejected}`` for votes between two entities with the same
    prompt; ties are skipped, or kept with ``tie: true`` (the first entity as ``chosen``).
    ``arena``: the public battle schema ``{model_a, model_b, winner, judge, tstamp}``
    with ``winner`` one of ``model_a``, ``model_b``, ``tie``, ``tie (bothbad)`` and the
    voter id hashed.
    """
    winner = row["selected_entity_id"]
    first_won = winner == row["entity1_id"]
    if fmt == "arena":
        return {
            "model_a": row["name1"],
            "model_b": row["name2"],
            # the Arena schema's own spelling for a both-bad verdict
            "winner": (
                ("tie (bothbad)" if row.get("verdict") == "both_bad" else "tie")
                if winner is None
                else ("model_a" if first_won else "model_b")
            ),
            "judge": judge_id(judge_key, row["user_id"]),
            "tstamp": row["created_at"].timestamp(),
        }
    if row["prompt1"] is None or row["prompt1"] != row["prompt2"]:
        return None
    if winner is None and not keep_ties:
        return None
    one = response_text(row["name1"], row["description1"])
    two = response_text(row["name2"], row["description2"])
    chosen, rejected = (two, one) if winner == row["entity2_id"] else (one, two)
    record: dict[str, Any] = {"prompt": row["prompt1"], "chosen": chosen, "rejected": rejected}
    if winner is None:
        record["tie"] = True
    return record


def encode_preferences(rows: Iterable[dict[str, Any]], fmt: str, *, keep_ties: bool, judge_key: bytes) -> str:
    """JSON Lines text for a batch of votes (skipped votes write nothing)."""
    lines = []
    for row in rows:
        record = preference_record(row, fmt, keep_ties=keep_ties, judge_key=judge_key)
        if record is not None:
            lines.append(orjson.dumps(record).decode() + "\n")
    return "".join(lines)
