"""Comparisons: the atomic vote, reading the vote log, and recent opponents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param
from sqlalchemy.ext.compiler import compiles

from compere.domain.bayes import DEFAULT_PRIOR, Prior
from compere.domain.elo import score_of
from compere.domain.trust import (
    POLICIES,
    Ledger,
    Share,
    Side,
    TrustPolicy,
    after_vote,
    unweighed,
    vote_evidence,
    weigh_vote,
)
from compere.domain.vote import vote_effects
from compere.storage import voters
from compere.storage.database import ConflictError, Connection, Database, Query, Row, keyset_batches
from compere.storage.entities import EntityNotFound
from compere.storage.idempotency import Receipt, answer_row
from compere.storage.rows import ComparisonRow, comparison_row, verdict_of
from compere.storage.tables import (
    COMPARISON_COLUMNS,
    DEFAULT_PROJECT_ID,
    LIVE,
    comparisons,
    entities,
    idempotency_records,
    new_comparison,
    voter_daily_votes,
    voter_entities,
    webhook_events,
)
from compere.storage.timestamps import as_datetime, utc_now

VOTE_EVENT = "comparison.created"


def _share(column: Any, label: str) -> Any:
    """The voting voter's share of the row's entity (NULL when none or no voter)."""
    return (
        sa.select(column)
        .where(voter_entities.c.voter == param("voter"), voter_entities.c.entity_id == entities.c.id)
        .scalar_subquery()
        .label(label)
    )


def _lock_pair() -> Any:
    """Lock both entities in id order; with the voting voter's shares of them."""
    return (
        sa.select(
            entities.c.id,
            entities.c.rating,
            entities.c.mu,
            entities.c.sigma,
            entities.c.vote_weight,
            _share(voter_entities.c.votes, "share_votes"),
            _share(voter_entities.c.weight, "share_weight"),
        )
        .where(
            entities.c.id.in_([param("a"), param("b")]), entities.c.project_id == param("project_id"), LIVE
        )
        .order_by(entities.c.id)
        .with_for_update()
    )


def _lock_pair_drawing_id() -> Query:
    """The pair locked as by ``_lock_pair``, then one more row whose ``new_id`` is the new
    comparison's id. It is drawn once both rows are locked (the second branch of the
    UNION ALL runs after the first; a scalar subquery beside the locked columns would be
    evaluated before the lock waits), so ids follow the order votes held their locks and
    a replay in id order meets the votes in an order they could have run in."""
    locked = _lock_pair().cte("locked")
    rows = sa.select(*locked.c, sa.null().label("new_id"))
    new_id = sa.select(
        *(sa.null() for _ in locked.c), sa.func.nextval(sa.literal_column("'comparisons_id_seq'"))
    )
    return Query(sa.union_all(rows, new_id), prepare=True)


_LOCK_PAIR = Query(_lock_pair(), prepare=True)
# In one-statement votes the new comparison's id is drawn from the identity sequence of
# comparisons.id (named by PostgreSQL's convention for identity columns) while the pair
# is locked: the vote's last round trip then carries its COMMIT and need not return
# anything.
_LOCK_PAIR_DRAWING_ID = _lock_pair_drawing_id()


def _apply_result(suffix: str = "") -> Any:
    """One side's vote effect on its entity row; parameters named ``id{suffix}`` etc."""
    return (
        sa.update(entities)
        .where(entities.c.id == param(f"id{suffix}"))
        .values(
            rating=param(f"rating{suffix}"),
            mu=param(f"mu{suffix}"),
            sigma=param(f"sigma{suffix}"),
            vote_weight=param(f"vote_weight{suffix}"),
            comparisons=entities.c.comparisons + 1,
            wins=entities.c.wins + param(f"win{suffix}"),
            losses=entities.c.losses + param(f"loss{suffix}"),
            ties=entities.c.ties + param(f"tie{suffix}"),
        )
    )


_APPLY_RESULT = Query(_apply_result())
_INSERT_COMPARISON = Query(
    sa.insert(comparisons).values(**new_comparison("entity1_id", "entity2_id")).returning(*COMPARISON_COLUMNS)
)
_GET_COMPARISON = Query(
    sa.select(*COMPARISON_COLUMNS).where(
        comparisons.c.id == param("id"), comparisons.c.project_id == param("project_id")
    )
)


class _InsertWithOwnId(sa.Insert):
    """An INSERT that supplies the id of a ``GENERATED ALWAYS`` identity column."""

    inherit_cache = True


@compiles(_InsertWithOwnId, "postgresql")
def _insert_overriding_identity(element: _InsertWithOwnId, compiler: Any, **kw: Any) -> str:
    sql: str = compiler.visit_insert(element, **kw)
    # CTEs (the voter's upserts) come first and may have VALUES lists of their own: the
    # clause goes into the main statement, the last INSERT INTO the element's table.
    head, marker, main = sql.rpartition(f"INSERT INTO {element.table.name} ")
    if not marker or main.count(") VALUES (") != 1:
        raise ValueError("expected a single-row INSERT ... VALUES")
    return head + marker + main.replace(") VALUES (", ") OVERRIDING SYSTEM VALUE VALUES (")


def _vote_in_one(*more_ctes: Any) -> Query:
    """The whole vote as one statement: both entity updates ride in data-modifying CTEs
    of the comparison INSERT (``Database.writes_vote_in_one_statement``). The id was
    drawn by ``_LOCK_PAIR_DRAWING_ID``, so the statement returns nothing and goes out
    together with the COMMIT (``Connection.finish``)."""
    stmt = (
        _InsertWithOwnId(comparisons)
        .values(id=param("new_id"), **new_comparison("id1", "id2"))
        .add_cte(_apply_result("1").cte("apply1"))
        .add_cte(_apply_result("2").cte("apply2"))
    )
    return Query(stmt.add_cte(*more_ctes) if more_ctes else stmt, prepare=True)


# The vote's webhook event rides in the same statement as one more CTE, so announcing a
# vote costs no round trip; INSERT ... SELECT keeps the statement's one VALUES list.
_VOTE_EVENT_CTE = (
    sa.insert(webhook_events)
    .from_select(
        ["event_type", "subject_id", "created_at"],
        sa.select(sa.literal_column(f"'{VOTE_EVENT}'"), param("new_id"), param("now")),
    )
    .cte("vote_event")
)
_ONE_STATEMENT: dict[tuple[bool, bool], Query] = {}


def _record_vote_in_one(db: Database, announce: bool, with_voter: bool) -> Query:
    """The one-statement vote, with the webhook event and the voter's record as CTEs."""
    query = _ONE_STATEMENT.get((announce, with_voter))
    if query is None:
        ctes = [_VOTE_EVENT_CTE] if announce else []
        if with_voter:
            ctes += [
                voters.update_voter_statement().cte("voter_record"),
                voters.upsert_share_statement(db, "1").cte("voter_share1"),
                voters.upsert_share_statement(db, "2").cte("voter_share2"),
            ]
        query = _ONE_STATEMENT[(announce, with_voter)] = _vote_in_one(*ctes)
    return query


_INSERT_VOTE_EVENT = Query(
    sa.insert(webhook_events).values(
        event_type=VOTE_EVENT, subject_id=param("subject_id"), created_at=param("now")
    )
)


class DailyCapReached(Exception):
    """The voter has cast the project's daily_vote_cap votes today (UTC)."""


# One counter row per (project, voter, UTC day), raised in the vote's own transaction
# only while below the cap: the row lock (PostgreSQL) or the single writer (SQLite)
# makes concurrent votes of one voter on any worker take their turns, and a refused
# vote rolls the whole transaction back. No row comes back when the cap is reached.
_COUNT_DAILY_VOTE: dict[str, Query] = {}


def _count_daily_vote(db: Database) -> Query:
    """The counter upsert in the backend's dialect (built once per dialect)."""
    query = _COUNT_DAILY_VOTE.get(db.name)
    if query is None:
        query = _COUNT_DAILY_VOTE[db.name] = Query(
            db.insert_or_skip(voter_daily_votes)
            .values(project_id=param("project_id"), voter=param("voter"), day=param("day"), votes=1)
            .on_conflict_do_update(
                index_elements=["project_id", "voter", "day"],
                set_={"votes": voter_daily_votes.c.votes + 1},
                where=voter_daily_votes.c.votes < param("cap"),
            )
            .returning(voter_daily_votes.c.votes)
        )
    return query


@dataclass(frozen=True, slots=True)
class PairProvenance:
    """How the voted pair was served (from its pair token), stored with the vote."""

    strategy: str
    probability: float
    token_id: str


async def record_comparison(
    db: Database,
    project_id: int = DEFAULT_PROJECT_ID,
    *,
    entity1_id: int,
    entity2_id: int,
    selected_entity_id: int | None,
    k_factor: float,
    user_id: int | None = None,
    provenance: PairProvenance | None = None,
    announce: bool = False,
    verdict: str | None = None,
    category: str | None = None,
    voter: str | None = None,
    daily_cap: int = 0,
    trust: TrustPolicy = POLICIES["off"],
    prior: Prior = DEFAULT_PRIOR,
) -> ComparisonRow:
    """Store one vote and apply it to both entities, all in one transaction.

    Both entities must be live in ``project_id`` (else :class:`EntityNotFound`); the
    database's composite keys refuse a comparison across projects in any case.
    Both entity rows are locked in id order (``FOR UPDATE`` on PostgreSQL, so two
    votes on overlapping pairs cannot deadlock; SQLite's ``BEGIN IMMEDIATE`` already
    serialises writers). Elo and the Bayesian strengths are computed from the locked
    values and the counters that feed the bandit move with them: either all of it is
    stored or none. A reused pair token hits a unique index and rolls it all back.
    Where the backend writes a vote in one statement (PostgreSQL) that is two round
    trips (three with a voter): ``BEGIN`` with the locking ``SELECT`` (which also draws
    the new comparison's id), then the writes (one statement) with the ``COMMIT``.
    ``user_id`` records who voted (None when the API is open). ``announce`` also writes
    a ``comparison.created`` webhook event in the same transaction (same statement
    where the vote is one), so an acknowledged vote is never missing from the webhooks.
    ``verdict`` ('win', 'tie' or 'both_bad'; by default win or tie as ``selected_entity_id``
    says) and ``category`` are stored with the vote; tie and both-bad score half a win
    each in the online models.
    ``voter`` is who cast it (``compere.infra.voters``); with a ``daily_cap`` the voter's
    counter for today is raised in the same transaction, and :class:`DailyCapReached`
    rolls everything back once the voter has used the day's votes.

    With a known voter the vote first locks the voter's record (the lock order is daily
    counter, voter, entities, in every vote and batch), reads the voter's shares of both
    entities with the pair, weighs the vote by the project's trust mode as stored when
    the voter's lock is held (``trust``, the deployment's, where it sets none;
    :func:`compere.domain.trust.weigh_vote`, from the record before it) and writes the
    new record and the shares in the same statement; the new comparison's id is drawn
    once every lock is held, so a replay of the log in id order (``rebuild-ratings``)
    meets the votes in an order they could have run in.
    """
    verdict = verdict_of(verdict, selected_entity_id)
    in_one = db.writes_vote_in_one_statement
    async with db.transaction() as tx:
        if daily_cap > 0 and voter is not None:
            counted = await tx.fetch_one(
                _count_daily_vote(db),
                {"project_id": project_id, "voter": voter, "day": utc_now()[:10], "cap": daily_cap},
            )
            if counted is None:
                raise DailyCapReached(voter)
        record = None
        if voter is not None:
            # The voter first (as batches lock theirs), so its shares read with the pair
            # below are the ones as of the voter's last vote: only a holder of this lock
            # changes them.
            record = await tx.fetch_one(voters.lock_voter(db), {"project_id": project_id, "voter": voter})
            assert record is not None
        rows = await tx.fetch_all(
            _LOCK_PAIR_DRAWING_ID if in_one else _LOCK_PAIR,
            {"a": entity1_id, "b": entity2_id, "project_id": project_id, "voter": voter},
        )
        locked = {row["id"]: row for row in rows if row["id"] is not None}
        for entity_id in (entity1_id, entity2_id):
            if entity_id not in locked:
                raise EntityNotFound(entity_id)
        one, two = locked[entity1_id], locked[entity2_id]
        new_id = rows[-1]["new_id"] if in_one else None
        score1 = score_of(entity1_id, selected_entity_id)
        weight = 1.0
        voter_params: dict[str, Any] = {}
        if voter is not None:
            assert record is not None
            state = voters.voter_state(record)
            share1 = Share(one["share_votes"] or 0, one["share_weight"] or 0.0)
            share2 = Share(two["share_votes"] or 0, two["share_weight"] or 0.0)
            side1, side2 = Side(one["sigma"], one["vote_weight"]), Side(two["sigma"], two["vote_weight"])
            if not unweighed(voter, state):
                policy = voters.trust_in_force(record, trust)
                weight = weigh_vote(state, share1, share2, side1, side2, policy, prior)
            evidence = vote_evidence(
                one["mu"], one["sigma"], two["mu"], two["sigma"], score1, served=provenance is not None
            )
            state, share1, share2 = after_vote(state, share1, share2, weight, evidence)
            voter_params = voters.share_params(
                project_id, voter, state, {"1": (entity1_id, share1), "2": (entity2_id, share2)}
            )
        effect1, effect2 = vote_effects(one, two, score1, k_factor, weight)
        first = {"id": entity1_id, "vote_weight": one["vote_weight"] + weight, **effect1._asdict()}
        second = {"id": entity2_id, "vote_weight": two["vote_weight"] + weight, **effect2._asdict()}
        now = utc_now()
        vote = {
            "project_id": project_id,
            "selected_entity_id": selected_entity_id,
            "now": now,
            "user_id": user_id,
            "strategy": provenance.strategy if provenance else None,
            "probability": provenance.probability if provenance else None,
            "pair_token_id": provenance.token_id if provenance else None,
            "verdict": verdict,
            "category": category,
            "voter": voter,
        }
        row: ComparisonRow
        if in_one:
            both = {f"{key}1": value for key, value in first.items()}
            both.update({f"{key}2": value for key, value in second.items()})
            statement = _record_vote_in_one(db, announce, voter is not None)
            await tx.finish(statement, {"new_id": new_id, **both, **vote, **voter_params})
            # The row as stored, with nothing left to ask the database.
            assert new_id is not None
            row = ComparisonRow(
                id=new_id,
                entity1_id=entity1_id,
                entity2_id=entity2_id,
                selected_entity_id=selected_entity_id,
                created_at=as_datetime(now),
                user_id=user_id,
                strategy=provenance.strategy if provenance else None,
                selection_probability=provenance.probability if provenance else None,
                verdict=verdict,
                category=category,
            )
        else:
            await tx.execute(_APPLY_RESULT, first)
            await tx.execute(_APPLY_RESULT, second)
            stored = await tx.fetch_one(
                _INSERT_COMPARISON, {"entity1_id": entity1_id, "entity2_id": entity2_id, **vote}
            )
            assert stored is not None
            row = comparison_row(stored)
            if voter is not None:
                await voters.write_voter(tx, db, voter_params)
            if announce:
                await tx.execute(_INSERT_VOTE_EVENT, {"subject_id": row.id, "now": now})
    return row


# --- votes in batches: the group commit and POST /comparisons/batch ------------------


class PairTokenUsed(Exception):
    """The vote's pair token was already used for a stored vote."""


class AlreadyRecorded(Exception):
    """An answer is already recorded under this Idempotency-Key: replay it."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True, slots=True)
class Vote:
    """One vote to store: what was compared and chose, who voted, how the pair was served,
    and the Idempotency-Key whose answer is recorded in the same transaction."""

    entity1_id: int
    entity2_id: int
    selected_entity_id: int | None
    k_factor: float
    project_id: int = DEFAULT_PROJECT_ID
    user_id: int | None = None
    provenance: PairProvenance | None = None
    receipt: Receipt | None = None
    voter: str | None = None  # who cast it (compere.infra.voters)
    daily_cap: int = 0  # the project's votes per voter per UTC day; 0: no cap
    verdict: str | None = None  # 'win' | 'tie' | 'both_bad'; None: win or tie as selected says
    category: str | None = None  # the criterion the vote judged
    # How the voter's record weighs the vote where the project sets no trust mode (the
    # deployment's); the project's own is read in the vote's transaction.
    trust: TrustPolicy = POLICIES["off"]
    prior: Prior = DEFAULT_PRIOR  # the project's prior (the trust weights use it)


async def record_vote(db: Database, vote: Vote, *, announce: bool = False) -> ComparisonRow:
    """Store one :class:`Vote` in a transaction of its own (:func:`record_comparison`;
    its ``receipt`` is for batches, which record the answer)."""
    return await record_comparison(
        db,
        vote.project_id,
        entity1_id=vote.entity1_id,
        entity2_id=vote.entity2_id,
        selected_entity_id=vote.selected_entity_id,
        k_factor=vote.k_factor,
        user_id=vote.user_id,
        provenance=vote.provenance,
        announce=announce,
        voter=vote.voter,
        daily_cap=vote.daily_cap,
        verdict=vote.verdict,
        category=vote.category,
        trust=vote.trust,
        prior=vote.prior,
    )


# What became of one vote of a batch: the stored row, or why it was not stored.
VoteOutcome = ComparisonRow | EntityNotFound | PairTokenUsed | AlreadyRecorded | DailyCapReached
ANSWER_CONTENT_TYPE = "application/json"

# PostgreSQL: lock every entity of the batch in id order, read its voters' shares of the
# entities they vote on (their records are locked already, so these are current), draw an
# id for every vote, and read which of its pair tokens and idempotency keys are taken, in
# one round trip.
_LOCK_BATCH = Query(
    sa.text(
        "WITH locked AS (SELECT id, project_id, rating, mu, sigma, vote_weight FROM entities"
        " WHERE id = ANY(CAST(:ids AS bigint[])) AND deleted_at IS NULL ORDER BY id FOR UPDATE)"
        " SELECT id, project_id, rating, mu, sigma, vote_weight, CAST(NULL AS text) AS share_voter,"
        " CAST(NULL AS bigint) AS share_votes, CAST(NULL AS float8) AS share_weight,"
        " CAST(NULL AS bigint[]) AS new_ids, CAST(NULL AS text[]) AS used_tokens,"
        " CAST(NULL AS text[]) AS known_keys"
        " FROM locked"
        " UNION ALL SELECT s.entity_id, NULL, NULL, NULL, NULL, NULL, s.voter, s.votes, s.weight, NULL, NULL, NULL"
        " FROM voter_entities AS s JOIN unnest(CAST(:share_voters AS text[]), CAST(:share_entities AS bigint[]))"
        " AS k(v, e) ON s.voter = k.v AND s.entity_id = k.e"
        # One more row, after the locked ones, with the batch's facts (once, not per row):
        # the ids are drawn once every row is locked.
        " UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
        " (SELECT array_agg(nextval('comparisons_id_seq')) FROM generate_series(1, CAST(:n AS integer))),"
        " (SELECT array_agg(pair_token_id) FROM comparisons"
        "  WHERE pair_token_id = ANY(CAST(:tokens AS text[]))),"
        " (SELECT array_agg(record_key) FROM idempotency_records"
        "  WHERE record_key = ANY(CAST(:keys AS text[])))"
    ),
    prepare=True,
)
# PostgreSQL: every write of the batch in one statement (each entity once, every
# comparison, its webhook events and recorded answers), sent with the COMMIT.
_WRITE_BATCH = Query(
    sa.text(
        "WITH apply AS ("
        " UPDATE entities AS e SET rating = v.rating, mu = v.mu, sigma = v.sigma,"
        " comparisons = e.comparisons + v.n, wins = e.wins + v.w, losses = e.losses + v.l,"
        " ties = e.ties + v.t, vote_weight = v.vw"
        " FROM unnest(CAST(:e_id AS bigint[]), CAST(:e_rating AS float8[]), CAST(:e_mu AS float8[]),"
        " CAST(:e_sigma AS float8[]), CAST(:e_n AS integer[]), CAST(:e_w AS integer[]),"
        " CAST(:e_l AS integer[]), CAST(:e_t AS integer[]), CAST(:e_vote_weight AS float8[]))"
        " AS v(id, rating, mu, sigma, n, w, l, t, vw)"
        " WHERE e.id = v.id),"
        # The voters' records and shares as the batch left them (rows locked by _LOCK_VOTERS).
        " voter_records AS ("
        " UPDATE voters AS r SET votes = x.votes, evidence = x.evidence, touched = x.touched, weight = x.weight"
        " FROM unnest(CAST(:w_pid AS bigint[]), CAST(:w_voter AS text[]), CAST(:w_votes AS bigint[]),"
        " CAST(:w_evidence AS float8[]), CAST(:w_touched AS bigint[]), CAST(:w_weight AS float8[]))"
        " AS x(pid, voter, votes, evidence, touched, weight)"
        " WHERE r.project_id = x.pid AND r.voter = x.voter),"
        # A voter whose every vote was refused leaves no record, as a lone vote's rollback.
        " idle_voters AS ("
        " DELETE FROM voters WHERE votes = 0 AND (project_id, voter) IN"
        " (SELECT * FROM unnest(CAST(:d_pid AS bigint[]), CAST(:d_voter AS text[])))),"
        " voter_shares AS ("
        " INSERT INTO voter_entities (voter, entity_id, project_id, votes, weight)"
        " SELECT * FROM unnest(CAST(:s_voter AS text[]), CAST(:s_entity AS bigint[]),"
        " CAST(:s_pid AS bigint[]), CAST(:s_votes AS bigint[]), CAST(:s_weight AS float8[]))"
        " ON CONFLICT (voter, entity_id) DO UPDATE SET votes = EXCLUDED.votes, weight = EXCLUDED.weight),"
        " vote_events AS ("
        " INSERT INTO webhook_events (event_type, subject_id, created_at)"
        f" SELECT '{VOTE_EVENT}', subject, CAST(:now AS timestamptz)"
        " FROM unnest(CAST(:event_ids AS bigint[])) AS subject),"
        " answers AS ("
        " INSERT INTO idempotency_records (record_key, fingerprint, status, content_type, body, created_at)"
        " SELECT k, f, s, ct, b, CAST(:now AS timestamptz)"
        " FROM unnest(CAST(:r_key AS text[]), CAST(:r_fp AS text[]), CAST(:r_status AS integer[]),"
        " CAST(:r_ct AS text[]), CAST(:r_body AS text[])) AS r(k, f, s, ct, b))"
        " INSERT INTO comparisons (id, project_id, entity1_id, entity2_id, selected_entity_id, created_at,"
        " user_id, strategy, selection_probability, pair_token_id, voter, verdict, category)"
        " OVERRIDING SYSTEM VALUE"
        " SELECT id, pid, e1, e2, sel, CAST(:now AS timestamptz), uid, strat, prob, tok, vtr, vdt, cat"
        " FROM unnest(CAST(:c_id AS bigint[]), CAST(:c_pid AS bigint[]), CAST(:c_e1 AS bigint[]),"
        " CAST(:c_e2 AS bigint[]), CAST(:c_sel AS bigint[]), CAST(:c_uid AS bigint[]),"
        " CAST(:c_strat AS text[]), CAST(:c_prob AS float8[]), CAST(:c_tok AS text[]),"
        " CAST(:c_voter AS text[]), CAST(:c_verdict AS text[]), CAST(:c_category AS text[]))"
        " AS c(id, pid, e1, e2, sel, uid, strat, prob, tok, vtr, vdt, cat)"
    ),
    prepare=True,
)
# SQLite (one writer under BEGIN IMMEDIATE): the next ids of comparisons, taken by hand so
# the batch's rows get them in arrival order; each entity's totals; the multi-row inserts
# are built per batch.
_NEXT_COMPARISON_ID = Query(
    sa.text(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'comparisons'),"
        " (SELECT MAX(id) FROM comparisons), 0) AS last_id"
    )
)
_APPLY_TOTALS = Query(
    sa.update(entities)
    .where(entities.c.id == param("id"))
    .values(
        rating=param("rating"),
        mu=param("mu"),
        sigma=param("sigma"),
        comparisons=entities.c.comparisons + param("n"),
        wins=entities.c.wins + param("w"),
        losses=entities.c.losses + param("l"),
        ties=entities.c.ties + param("t"),
        vote_weight=param("vote_weight"),
    )
)
# PostgreSQL, a batch with voters: create each new voter's record and lock every record
# (before the entities, in one order for every batch, as a lone vote locks its voter
# first), in one round trip.
_LOCK_VOTERS = Query(
    sa.text(
        "INSERT INTO voters (project_id, voter, votes, evidence, touched, weight)"
        " SELECT p, v, 0, 0, 0, 0 FROM unnest(CAST(:pids AS bigint[]), CAST(:names AS text[])) AS n(p, v)"
        " ORDER BY p, v"
        " ON CONFLICT (project_id, voter) DO UPDATE SET voter = EXCLUDED.voter"
        " RETURNING project_id, voter, votes, evidence, touched, weight,"
        " (SELECT trust_mode FROM projects WHERE projects.id = voters.project_id) AS trust_mode"
    ),
    prepare=True,
)


@dataclass(slots=True)
class _Totals:
    """One entity's running state through a batch: values after the last vote applied,
    and how its counters moved."""

    rating: float
    mu: float
    sigma: float
    vote_weight: float
    n: int = 0
    w: int = 0
    l: int = 0  # noqa: E741
    t: int = 0


async def record_votes(
    db: Database,
    votes: Sequence[Vote],
    *,
    announce: bool = False,
    answer: Callable[[ComparisonRow], bytes] | None = None,
    batch_receipt: Receipt | None = None,
    batch_answer: Callable[[list[VoteOutcome]], bytes] | None = None,
) -> list[VoteOutcome]:
    """Store ``votes`` in one transaction, applied in order; one outcome per vote.

    Every entity the votes touch is locked once, in id order; the votes are applied one
    after another to the locked values (the same Elo, Bayesian and counter steps as one
    vote per transaction in that order, so ``rebuild-ratings`` agrees), each entity is
    written once and all comparison rows in one statement, with one commit. A vote that
    names a missing or deleted entity, reuses a pair token or carries an Idempotency-Key
    already answered gets that as its outcome and the others are stored. ``answer``
    renders a stored vote's answer for its ``receipt``; ``batch_receipt`` records
    ``batch_answer(outcomes)`` for the whole call. Raises ``ConflictError`` only when a
    concurrent transaction took a pair token or key after the check (callers retry the
    votes one by one).
    """
    ids = sorted({entity_id for vote in votes for entity_id in (vote.entity1_id, vote.entity2_id)})
    tokens = [vote.provenance.token_id for vote in votes if vote.provenance is not None]
    keys = [vote.receipt.key for vote in votes if vote.receipt is not None]
    in_one = db.writes_vote_in_one_statement
    # With voters, the comparison ids are drawn once their rows are locked too (as a lone
    # vote does), so id order is the order votes were applied for every voter.
    with_voters = any(vote.voter is not None for vote in votes)
    async with db.transaction() as tx:
        # The voters' daily counters first, in arrival order, as a lone vote takes them
        # (before the entity locks, so the two paths lock in the same order).
        capped = await _count_daily_votes(db, tx, votes)
        records: list[Row] = []
        shares: list[tuple[str, int, int, float]] = []
        if in_one:
            if with_voters:
                names = sorted({(vote.project_id, vote.voter) for vote in votes if vote.voter is not None})
                records = await tx.fetch_all(
                    _LOCK_VOTERS, {"pids": _numbers(p for p, _ in names), "names": [v for _, v in names]}
                )
            share_keys = sorted(
                {
                    (vote.voter, e)
                    for vote in votes
                    if vote.voter is not None
                    for e in (vote.entity1_id, vote.entity2_id)
                }
            )
            *rows, facts = await tx.fetch_all(
                _LOCK_BATCH,
                {
                    "ids": ids,
                    "n": len(votes),
                    "tokens": tokens,
                    "keys": keys,
                    "share_voters": [v for v, _ in share_keys],
                    "share_entities": _numbers(e for _, e in share_keys),
                },
            )
            locked = [row for row in rows if row["share_voter"] is None]
            shares = [
                (row["share_voter"], row["id"], int(row["share_votes"]), float(row["share_weight"]))
                for row in rows
                if row["share_voter"] is not None
            ]
            new_ids = iter(sorted(facts["new_ids"] or ()))
            used_tokens = set(facts["used_tokens"] or ())
            known_keys = set(facts["known_keys"] or ())
        else:
            if with_voters:
                records, shares = await _lock_voters(db, tx, votes, ids)
            locked = await tx.fetch_all(
                Query(
                    sa.select(
                        entities.c.id,
                        entities.c.project_id,
                        entities.c.rating,
                        entities.c.mu,
                        entities.c.sigma,
                        entities.c.vote_weight,
                    )
                    .where(entities.c.id.in_(ids), LIVE)
                    .order_by(entities.c.id)
                )
            )
            used_tokens = await _present(tx, comparisons.c.pair_token_id, tokens)
            known_keys = await _present(tx, idempotency_records.c.record_key, keys)
            last_id = int(await tx.fetch_value(_NEXT_COMPARISON_ID) or 0)
            new_ids = iter(range(last_id + 1, last_id + 1 + len(votes)))
        state = {
            row["id"]: _Totals(row["rating"], row["mu"], row["sigma"], row["vote_weight"]) for row in locked
        }
        projects = {row["id"]: row["project_id"] for row in locked}
        ledgers = _ledgers(votes, state, projects, records, shares) if with_voters else {}
        now = utc_now()
        created_at = as_datetime(now)
        outcomes: list[VoteOutcome] = []
        stored: list[tuple[Vote, ComparisonRow]] = []
        refused_after_count: list[Vote] = []
        for index, vote in enumerate(votes):
            outcome = capped.get(index) or _refusal(vote, projects, used_tokens, known_keys)
            if outcome is not None and index not in capped and vote.daily_cap > 0 and vote.voter is not None:
                refused_after_count.append(vote)  # counted above, but not stored: give it back
            if outcome is None:
                outcome = _apply(vote, state, next(new_ids), created_at, ledgers.get(vote.project_id))
                stored.append((vote, outcome))
                if vote.provenance is not None:
                    used_tokens.add(vote.provenance.token_id)
                if vote.receipt is not None:
                    known_keys.add(vote.receipt.key)
            outcomes.append(outcome)
        answers = [
            answer_row(vote.receipt, 200, ANSWER_CONTENT_TYPE, answer(row), now)
            for vote, row in stored
            if vote.receipt is not None and answer is not None
        ]
        if batch_receipt is not None and batch_answer is not None:
            answers.append(answer_row(batch_receipt, 200, ANSWER_CONTENT_TYPE, batch_answer(outcomes), now))
        for vote in refused_after_count:
            await tx.execute(_UNCOUNT_DAILY_VOTE, _daily_params(vote))
        if not in_one:
            for project_id, ledger in ledgers.items():
                await voters.write_ledger(tx, db, project_id, ledger)
        idle = any(record.votes == 0 for ledger in ledgers.values() for record in ledger.voters.values())
        if not stored and not answers and not (in_one and idle):
            return outcomes
        touched = {entity_id: totals for entity_id, totals in state.items() if totals.n}
        if in_one:
            params = _batch_params(touched, stored, answers, announce, now)
            params.update(_voter_params(ledgers))
            await tx.finish(_WRITE_BATCH, params)
        else:
            for entity_id, totals in touched.items():
                await tx.execute(_APPLY_TOTALS, {"id": entity_id, **asdict(totals)})
            if stored:
                await tx.execute(
                    Query(sa.insert(comparisons).values([_comparison_values(r, v) for v, r in stored]))
                )
                if announce:
                    events = [
                        {"event_type": VOTE_EVENT, "subject_id": r.id, "created_at": now} for _, r in stored
                    ]
                    await tx.execute(Query(sa.insert(webhook_events).values(events)))
            if answers:
                await tx.execute(Query(sa.insert(idempotency_records).values(answers)))
    return outcomes


_UNCOUNT_DAILY_VOTE = Query(
    sa.update(voter_daily_votes)
    .where(
        voter_daily_votes.c.project_id == param("project_id"),
        voter_daily_votes.c.voter == param("voter"),
        voter_daily_votes.c.day == param("day"),
    )
    .values(votes=voter_daily_votes.c.votes - 1)
)


def _daily_params(vote: Vote) -> dict[str, Any]:
    return {"project_id": vote.project_id, "voter": vote.voter, "day": utc_now()[:10], "cap": vote.daily_cap}


async def _count_daily_votes(
    db: Database, tx: Connection, votes: Sequence[Vote]
) -> dict[int, DailyCapReached]:
    """Raise each capped voter's counter for today, vote by vote; the votes (by index)
    that found the day's votes used up."""
    refused: dict[int, DailyCapReached] = {}
    for index, vote in enumerate(votes):
        capped = vote.daily_cap > 0 and vote.voter is not None
        if capped and await tx.fetch_one(_count_daily_vote(db), _daily_params(vote)) is None:
            refused[index] = DailyCapReached(str(vote.voter))
    return refused


async def _lock_voters(
    db: Database, tx: Connection, votes: Sequence[Vote], ids: list[int]
) -> tuple[list[Row], list[tuple[str, int, int, float]]]:
    """Lock every voter of the batch one by one, in (project, voter) order (backends
    without ``_LOCK_VOTERS``), then read their shares of the batch's entities: the
    records and the shares ``(voter, entity id, votes, weight)``."""
    names = sorted({(vote.project_id, vote.voter) for vote in votes if vote.voter is not None})
    records = []
    for project_id, name in names:
        record = await tx.fetch_one(voters.lock_voter(db), {"project_id": project_id, "voter": name})
        assert record is not None
        records.append({"project_id": project_id, "voter": name, **record})
    rows = await voters.shares_of(tx, sorted({name for _, name in names}), ids)
    return records, [(r["voter"], r["entity_id"], int(r["votes"]), float(r["weight"])) for r in rows]


def _ledgers(
    votes: Sequence[Vote],
    state: dict[int, _Totals],
    projects: dict[int, int],
    records: Sequence[Row],
    shares: Sequence[tuple[str, int, int, float]],
) -> dict[int, Ledger]:
    """One ledger per project with voters in the batch: the locked voters' records, their
    shares of the batch's live entities and the entities' vote weights, as a lone vote
    reads them."""
    ledgers: dict[int, Ledger] = {}
    for vote in votes:
        if vote.voter is not None and vote.project_id not in ledgers:
            ledger = ledgers[vote.project_id] = Ledger(vote.trust, vote.prior)
            ledger.entity_weight = {entity_id: totals.vote_weight for entity_id, totals in state.items()}
    for record in records:
        ledger = ledgers[record["project_id"]]
        ledger.voters[record["voter"]] = voters.voter_state(record)
        # The project's mode as stored when the voters' locks were taken (see lock_voter).
        ledger.policy = voters.trust_in_force(record, ledger.policy)
    for voter, entity_id, votes_on, weight in shares:
        owner = ledgers.get(projects.get(entity_id, -1))
        if owner is not None:  # else an entity since deleted or of another project: its votes are refused
            owner.shares[(voter, entity_id)] = Share(votes_on, weight)
    return ledgers


def _voter_params(ledgers: dict[int, Ledger]) -> dict[str, Any]:
    """The voters' records and shares for ``_WRITE_BATCH``: every record the batch locked
    (deleted again where no vote was stored) and every share its votes moved."""
    records = [(p, name, state) for p, ledger in ledgers.items() for name, state in ledger.voters.items()]
    idle = [(p, name) for p, name, state in records if state.votes == 0]
    records = [(p, name, state) for p, name, state in records if state.votes > 0]
    shares = [(p, key, share) for p, ledger in ledgers.items() for key, share in ledger.shares.items()]
    return {
        "w_pid": _numbers(p for p, _, _ in records),
        "w_voter": [str(name) for _, name, _ in records],
        "w_votes": _numbers(state.votes for _, _, state in records),
        "w_evidence": _numbers(state.evidence for _, _, state in records),
        "w_touched": _numbers(state.touched for _, _, state in records),
        "w_weight": _numbers(state.weight for _, _, state in records),
        "d_pid": _numbers(p for p, _ in idle),
        "d_voter": [str(name) for _, name in idle],
        "s_voter": [str(name) for _, (name, _), _ in shares],
        "s_entity": _numbers(entity_id for _, (_, entity_id), _ in shares),
        "s_pid": _numbers(p for p, _, _ in shares),
        "s_votes": _numbers(share.votes for _, _, share in shares),
        "s_weight": _numbers(share.weight for _, _, share in shares),
    }


async def _present(tx: Connection, column: Any, values: list[str]) -> set[str]:
    """Which of ``values`` the (unique) ``column`` already holds."""
    if not values:
        return set()
    rows = await tx.fetch_all(Query(sa.select(column.label("value")).where(column.in_(values))))
    return {row["value"] for row in rows}


def _refusal(
    vote: Vote, projects: dict[int, int], used_tokens: set[str], known_keys: set[str]
) -> VoteOutcome | None:
    if vote.receipt is not None and vote.receipt.key in known_keys:
        return AlreadyRecorded(vote.receipt.key)
    for entity_id in (vote.entity1_id, vote.entity2_id):
        if projects.get(entity_id) != vote.project_id:  # missing, deleted or in another project
            return EntityNotFound(entity_id)
    if vote.provenance is not None and vote.provenance.token_id in used_tokens:
        return PairTokenUsed()
    return None


def _apply(
    vote: Vote, state: dict[int, _Totals], new_id: int, created_at: Any, ledger: Ledger | None
) -> ComparisonRow:
    """Apply one vote to the running state; the comparison row it stores. The voter's
    record (``ledger``) weighs it as a lone vote would be weighed."""
    one, two = state[vote.entity1_id], state[vote.entity2_id]
    score1 = score_of(vote.entity1_id, vote.selected_entity_id)
    weight = 1.0
    if ledger is not None:
        weight = ledger.vote(
            vote.voter,
            vote.entity1_id,
            vote.entity2_id,
            (one.mu, one.sigma),
            (two.mu, two.sigma),
            score1,
            served=vote.provenance is not None,
        )
    effects = vote_effects(
        {"rating": one.rating, "mu": one.mu, "sigma": one.sigma},
        {"rating": two.rating, "mu": two.mu, "sigma": two.sigma},
        score1,
        vote.k_factor,
        weight,
    )
    for totals, effect in zip((one, two), effects, strict=True):
        totals.vote_weight += weight
        totals.rating, totals.mu, totals.sigma = effect.rating, effect.mu, effect.sigma
        totals.n += 1
        totals.w += effect.win
        totals.l += effect.loss
        totals.t += effect.tie
    provenance = vote.provenance
    return ComparisonRow(
        id=new_id,
        entity1_id=vote.entity1_id,
        entity2_id=vote.entity2_id,
        selected_entity_id=vote.selected_entity_id,
        created_at=created_at,
        user_id=vote.user_id,
        strategy=provenance.strategy if provenance else None,
        selection_probability=provenance.probability if provenance else None,
        verdict=verdict_of(vote.verdict, vote.selected_entity_id),
        category=vote.category,
    )


def _comparison_values(row: ComparisonRow, vote: Vote) -> dict[str, Any]:
    return {
        "id": row.id,
        "project_id": vote.project_id,
        "entity1_id": row.entity1_id,
        "entity2_id": row.entity2_id,
        "selected_entity_id": row.selected_entity_id,
        "created_at": row.created_at.isoformat(timespec="microseconds"),
        "user_id": row.user_id,
        "strategy": row.strategy,
        "selection_probability": row.selection_probability,
        "pair_token_id": vote.provenance.token_id if vote.provenance else None,
        "voter": vote.voter,
        "verdict": row.verdict,
        "category": row.category,
    }


def _batch_params(
    touched: dict[int, _Totals],
    stored: list[tuple[Vote, ComparisonRow]],
    answers: list[dict[str, Any]],
    announce: bool,
    now: str,
) -> dict[str, Any]:
    params: dict[str, Any] = {"now": now, "e_id": _numbers(touched)}
    for name in ("rating", "mu", "sigma", "n", "w", "l", "t", "vote_weight"):
        params[f"e_{name}"] = _numbers(getattr(totals, name) for totals in touched.values())
    rows = [_comparison_values(row, vote) for vote, row in stored]
    for name, column in (
        ("id", "id"),
        ("pid", "project_id"),
        ("e1", "entity1_id"),
        ("e2", "entity2_id"),
        ("sel", "selected_entity_id"),
        ("uid", "user_id"),
        ("prob", "selection_probability"),
    ):
        params[f"c_{name}"] = _numbers(values[column] for values in rows)
    for name, column in (
        ("strat", "strategy"),
        ("tok", "pair_token_id"),
        ("voter", "voter"),
        ("verdict", "verdict"),
        ("category", "category"),
    ):
        params[f"c_{name}"] = [values[column] for values in rows]
    params["event_ids"] = params["c_id"] if announce else "{}"
    for name, column in (
        ("key", "record_key"),
        ("fp", "fingerprint"),
        ("status", "status"),
        ("ct", "content_type"),
        ("body", "body"),
    ):
        params[f"r_{name}"] = [values[column] for values in answers]
    return params


def _numbers(values: Iterable[int | float | None]) -> str:
    """A PostgreSQL array literal of numbers (``{1,2.5,NULL}``), cast by the statement.

    Far cheaper than the driver's adaptation of a list (an ``ARRAY[...]`` of quoted
    literals); ``repr`` of a float is the shortest text that reads back as the same
    double, so nothing is rounded.
    """
    return "{" + ",".join("NULL" if value is None else repr(value) for value in values) + "}"


def conflict_is_idempotency_key(exc: ConflictError) -> bool:
    """Whether a refused write collided on a recorded Idempotency-Key (not a pair token)."""
    return "idempotency_records" in str(exc)


async def get_comparison(
    db: Connection, comparison_id: int, project_id: int = DEFAULT_PROJECT_ID
) -> ComparisonRow | None:
    row = await db.fetch_one(_GET_COMPARISON, {"id": comparison_id, "project_id": project_id})
    return None if row is None else comparison_row(row)


async def list_comparisons(
    db: Connection, project_id: int, *, skip: int, limit: int, entity_id: int | None
) -> list[ComparisonRow]:
    """A project's vote log, newest first."""
    stmt = sa.select(*COMPARISON_COLUMNS).where(comparisons.c.project_id == project_id)
    if entity_id is not None:
        stmt = stmt.where(
            sa.or_(
                comparisons.c.entity1_id == entity_id,
                comparisons.c.entity2_id == entity_id,
            )
        )
    stmt = stmt.order_by(comparisons.c.id.desc()).limit(limit).offset(skip)
    return [comparison_row(row) for row in await db.fetch_all(Query(stmt))]


_VOTE_LOG = Query(
    sa.select(
        comparisons.c.id,
        comparisons.c.entity1_id,
        comparisons.c.entity2_id,
        comparisons.c.selected_entity_id,
        comparisons.c.category,
        comparisons.c.voter,
        comparisons.c.pair_token_id.is_not(None).label("served"),
    )
    .where(comparisons.c.id > param("after"), comparisons.c.project_id == param("project_id"))
    .order_by(comparisons.c.id)
    .limit(param("limit"))
)


def vote_log(db: Connection, project_id: int, batch_size: int) -> AsyncIterator[list[Row]]:
    """Every vote of a project: id, entity ids, selected id, voter and whether its pair
    was served (``served``), in id order, ``batch_size`` at a time."""
    return keyset_batches(db, _VOTE_LOG, batch_size, {"project_id": project_id})


def _recent_opponents_query() -> Query:
    as_first = (
        sa.select(comparisons.c.id, comparisons.c.entity2_id.label("opponent"))
        .where(comparisons.c.entity1_id == param("id"))
        .order_by(comparisons.c.id.desc())
        .limit(param("limit"))
    )
    as_second = (
        sa.select(comparisons.c.id, comparisons.c.entity1_id.label("opponent"))
        .where(comparisons.c.entity2_id == param("id"))
        .order_by(comparisons.c.id.desc())
        .limit(param("limit"))
    )
    both = sa.union_all(as_first.subquery().select(), as_second.subquery().select()).subquery()
    return Query(sa.select(both.c.opponent).order_by(both.c.id.desc()).limit(param("limit")))


_RECENT_OPPONENTS = _recent_opponents_query()


async def recent_opponents(db: Connection, entity_id: int, limit: int) -> list[int]:
    """Ids of the entities ``entity_id`` met in its last ``limit`` comparisons."""
    if limit <= 0:
        return []
    rows = await db.fetch_all(_RECENT_OPPONENTS, {"id": entity_id, "limit": limit})
    return [int(row["opponent"]) for row in rows]
