"""The league's SQLite database (<league dir>/league.db): members, matches, ratings.

Several processes may use one league at once (two `league eval` runs, the
self-play loop adding snapshots), so the database runs in WAL mode with a busy
timeout, every write is one short IMMEDIATE transaction retried on contention, and
one match (game) is always one row written in one transaction.

A match is identified by its pair (the two member names, sorted) and its game index
in that pair; that key is unique, so a match can never be written twice. Before
playing a match a process claims its key (owner token, host, pid, lease expiry).
A claim whose owner is alive blocks the others; one whose process is gone (killed)
or whose lease expired is taken over, so an interrupted run leaves nothing stuck.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from league.members import LeagueError, Member
from league.ratings import Game

SCHEMA_VERSION = 1
DB_NAME = "league.db"
DEFAULT_LEAGUE = "runs/league"  # the league directory when none is given (runs/ is not versioned)
BUSY_TIMEOUT_S = 30.0
WRITE_RETRIES = 20
CLAIM_LEASE_S = 3600.0

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('scripted', 'snapshot', 'external')),
    path TEXT,
    parent_run TEXT,
    step INTEGER,
    created REAL NOT NULL
);
-- one row per game of 4 rounds. rounds holds the per-round winners as a JSON list
-- (+1 player 1, -1 player 2, 0 nobody). player1 says which member took the first side
-- (no semicolons in this script: it is split on them)
CREATE TABLE IF NOT EXISTS matches (
    id INTEGER PRIMARY KEY,
    pair_a TEXT NOT NULL REFERENCES members(name),
    pair_b TEXT NOT NULL REFERENCES members(name),
    game_index INTEGER NOT NULL,
    player1 TEXT NOT NULL REFERENCES members(name),
    player2 TEXT NOT NULL REFERENCES members(name),
    seed INTEGER NOT NULL,
    rounds TEXT NOT NULL,
    score1 INTEGER NOT NULL,
    score2 INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    duration REAL NOT NULL,
    created REAL NOT NULL,
    UNIQUE (pair_a, pair_b, game_index),
    CHECK (pair_a < pair_b),
    CHECK ((player1 = pair_a AND player2 = pair_b) OR (player1 = pair_b AND player2 = pair_a))
);
CREATE TABLE IF NOT EXISTS claims (
    pair_a TEXT NOT NULL,
    pair_b TEXT NOT NULL,
    game_index INTEGER NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (pair_a, pair_b, game_index)
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    member TEXT NOT NULL REFERENCES members(name),
    value REAL NOT NULL,
    low REAL,
    high REAL,
    games INTEGER NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ratings_by_kind ON ratings (kind, time);
"""


@dataclass(frozen=True)
class MatchKey:
    """A match's identity: the sorted pair and the game index within the pair."""

    pair_a: str
    pair_b: str
    game_index: int


@dataclass(frozen=True)
class MatchRecord:
    """A finished match as stored."""

    key: MatchKey
    player1: str
    player2: str
    seed: int
    rounds: tuple[int, ...]
    score1: int
    score2: int
    steps: int
    duration: float
    created: float

    @property
    def game(self) -> Game:
        return Game(self.player1, self.player2, self.score1, self.score2)


@dataclass(frozen=True)
class RatingRow:
    """One entry of the rating history."""

    kind: str
    member: str
    value: float
    low: float | None
    high: float | None
    games: int
    time: float


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def check_writable(directory: str | Path) -> None:
    """A LeagueError naming what is read-only unless a league can be written in `directory`.

    Asked of os.access before anything is written, so that a read-only league is refused
    in one line instead of by SQLite halfway ("unable to open database file").
    """
    directory = Path(directory)
    path = directory / DB_NAME
    if not directory.exists():
        existing = directory.absolute().parent
        while not existing.exists():
            existing = existing.parent
        if not os.access(existing, os.W_OK):
            raise LeagueError(f"cannot create the league directory {directory}: {existing} is read-only")
        return
    if not os.access(directory, os.W_OK):
        raise LeagueError(
            f"the league directory {directory} is read-only: this command writes to the league "
            "(`league show` only reads)"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise LeagueError(f"{path} is read-only: this command writes to the league (`league show` only reads)")


def _is_read_only_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


class LeagueDB:
    """One connection to a league database; use one per process (or thread).

    `readonly` opens it for reading only (`league show`, plots): no schema is created and
    nothing is written. Where the directory and the file are writable that is an ordinary
    connection (so SQLite removes its WAL files on close, as after any run); otherwise
    SQLite's read-only mode, and, where the directory is not writable and holds no WAL
    file (so no process can be writing the league), an immutable file, because SQLite
    could not create the WAL index beside it. Without `readonly` the directory and the
    file must be writable, or a LeagueError names the read-only one.
    """

    def __init__(self, directory: str | Path, create: bool = False, readonly: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.readonly = readonly
        if not self.path.exists():
            if not create or readonly:
                raise LeagueError(
                    f"no league at {self.directory} ({DB_NAME} missing); "
                    "`hockey-agent league eval` or `league add` creates one"
                )
            check_writable(self.directory)
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LeagueError(
                    f"cannot create the league directory {self.directory}: {exc.strerror or exc}"
                ) from None
        if not readonly:
            check_writable(self.directory)
        self.owner = uuid.uuid4().hex
        self.host = socket.gethostname()
        if readonly:
            self._open_read_only()
            return
        self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            self._check_version()
            self._write(self._create_schema)
            # WAL lets readers and one writer work at once; NORMAL sync is safe in WAL
            # (a crash of the process loses nothing committed)
            self._retry(lambda: self._conn.execute("PRAGMA journal_mode=WAL"))
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if _is_read_only_error(exc):
                check_writable(self.directory)  # names the read-only directory or file, if that is why
            raise LeagueError(f"cannot use {self.path} as a league database: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def _open_read_only(self) -> None:
        directory_writable = os.access(self.directory, os.W_OK)
        if directory_writable and os.access(self.path, os.W_OK):
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        else:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            if not directory_writable and not self.path.with_name(DB_NAME + "-wal").exists():
                uri += "&immutable=1"  # nobody can be writing: no WAL file can be made beside it
            self._conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            self._check_version()
            tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "members" not in tables:
                raise LeagueError(f"{self.path} holds no league yet (no members table)")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise LeagueError(f"cannot read {self.path} as a league database: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LeagueDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------

    def _check_version(self) -> None:
        """Refuse a database from a newer schema (or not a league) before writing anything."""
        tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return
        if "schema_version" not in tables:
            raise LeagueError(f"{self.path} is not a league database (no schema_version table)")
        row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        version = row[0] if row else None
        if version is None:
            raise LeagueError(f"{self.path} has an empty schema_version table")
        if version > SCHEMA_VERSION:
            raise LeagueError(
                f"{self.path} has schema version {version}, newer than this hockey-agent's "
                f"{SCHEMA_VERSION}; upgrade hockey-agent to use it (nothing was written)"
            )

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    @staticmethod
    def _retry(call: Callable[[], T]) -> T:
        """Call again with backoff while SQLite reports the database busy (beyond its own timeout)."""
        delay = 0.01
        for attempt in range(WRITE_RETRIES):
            try:
                return call()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == WRITE_RETRIES - 1:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable: the last attempt either returns or raises")

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one IMMEDIATE transaction, retrying when another writer holds the lock."""
        self._retry(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        try:
            result = work(self._conn)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return result

    # -- members ----------------------------------------------------------------

    def add_members(self, members: Iterable[Member]) -> None:
        """Add members in one transaction; a name already taken is an error and adds none."""
        members = list(members)

        def work(conn: sqlite3.Connection) -> None:
            for m in members:
                if conn.execute("SELECT 1 FROM members WHERE name = ?", (m.name,)).fetchone():
                    raise LeagueError(f"a member called {m.name!r} already exists; choose another name")
                conn.execute(
                    "INSERT INTO members (name, kind, path, parent_run, step, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (m.name, m.kind, m.path, m.parent_run, m.step, m.created or time.time()),
                )

        self._write(work)

    def start_with(self, members: Iterable[Member]) -> bool:
        """Add `members` if the league has none yet (a new league); True if it did.

        Checked and written in one transaction, so two processes starting the same
        new league add them once.
        """
        members = list(members)

        def work(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]:
                return False
            conn.executemany(
                "INSERT INTO members (name, kind, path, parent_run, step, created) VALUES (?, ?, ?, ?, ?, ?)",
                [(m.name, m.kind, m.path, m.parent_run, m.step, m.created or time.time()) for m in members],
            )
            return True

        return self._write(work)

    def members(self) -> list[Member]:
        rows = self._conn.execute(
            "SELECT name, kind, path, parent_run, step, created FROM members ORDER BY created, name"
        ).fetchall()
        return [Member(*row) for row in rows]

    def member(self, name: str) -> Member:
        """The member called `name`; an unknown name is a LeagueError listing the members."""
        for m in self.members():
            if m.name == name:
                return m
        names = ", ".join(sorted(m.name for m in self.members())) or "none"
        raise LeagueError(f"unknown member {name!r}; members: {names}")

    # -- matches ----------------------------------------------------------------

    def matches(self) -> list[MatchRecord]:
        """Every finished match, in the order written."""
        rows = self._conn.execute(
            "SELECT pair_a, pair_b, game_index, player1, player2, seed, rounds, score1, score2, "
            "steps, duration, created FROM matches ORDER BY id"
        ).fetchall()
        return [
            MatchRecord(MatchKey(a, b, i), p1, p2, seed, tuple(json.loads(rounds)), s1, s2, steps, dur, created)
            for a, b, i, p1, p2, seed, rounds, s1, s2, steps, dur, created in rows
        ]

    def games(self) -> list[Game]:
        return [m.game for m in self.matches()]

    def played_indices(self) -> dict[tuple[str, str], set[int]]:
        """Game indices already played, by sorted pair."""
        played: dict[tuple[str, str], set[int]] = {}
        for a, b, i in self._conn.execute("SELECT pair_a, pair_b, game_index FROM matches"):
            played.setdefault((a, b), set()).add(i)
        return played

    def _claim_holder_alive(self, host: str, pid: int, expires: float) -> bool:
        if expires < time.time():
            return False
        return host != self.host or _pid_alive(pid)

    def claim(self, key: MatchKey) -> bool:
        """Take the right to play `key`; False if it is played or a live process holds it."""

        def work(conn: sqlite3.Connection) -> bool:
            k = (key.pair_a, key.pair_b, key.game_index)
            if conn.execute("SELECT 1 FROM matches WHERE pair_a = ? AND pair_b = ? AND game_index = ?", k).fetchone():
                return False
            row = conn.execute(
                "SELECT owner, host, pid, expires FROM claims WHERE pair_a = ? AND pair_b = ? AND game_index = ?", k
            ).fetchone()
            if row is not None and row[0] != self.owner and self._claim_holder_alive(*row[1:]):
                return False
            conn.execute(
                "INSERT OR REPLACE INTO claims (pair_a, pair_b, game_index, owner, host, pid, expires) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*k, self.owner, self.host, os.getpid(), time.time() + CLAIM_LEASE_S),
            )
            return True

        return self._write(work)

    def release(self, keys: Iterable[MatchKey]) -> None:
        """Drop this connection's claims on `keys` (matches not played after all)."""
        keys = list(keys)

        def work(conn: sqlite3.Connection) -> None:
            for key in keys:
                conn.execute(
                    "DELETE FROM claims WHERE pair_a = ? AND pair_b = ? AND game_index = ? AND owner = ?",
                    (key.pair_a, key.pair_b, key.game_index, self.owner),
                )

        if keys:
            self._write(work)

    def record(self, match: MatchRecord) -> bool:
        """Write one finished match and drop its claim, in one transaction.

        Returns False (and writes nothing) if that match is already stored.
        """
        key = match.key
        if {match.player1, match.player2} != {key.pair_a, key.pair_b} or key.pair_a >= key.pair_b:
            raise ValueError(f"match players {match.player1}, {match.player2} do not fit its key {key}")

        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO matches (pair_a, pair_b, game_index, player1, player2, seed, rounds, "
                "score1, score2, steps, duration, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.pair_a,
                    key.pair_b,
                    key.game_index,
                    match.player1,
                    match.player2,
                    match.seed,
                    json.dumps(list(match.rounds)),
                    match.score1,
                    match.score2,
                    match.steps,
                    match.duration,
                    match.created,
                ),
            )
            conn.execute(
                "DELETE FROM claims WHERE pair_a = ? AND pair_b = ? AND game_index = ?",
                (key.pair_a, key.pair_b, key.game_index),
            )
            return cur.rowcount == 1

        return self._write(work)

    # -- ratings ----------------------------------------------------------------

    def add_ratings(self, rows: Iterable[RatingRow]) -> None:
        """Append a snapshot of ratings to the history, in one transaction."""
        rows = list(rows)

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO ratings (kind, member, value, low, high, games, time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.kind, r.member, r.value, r.low, r.high, r.games, r.time) for r in rows],
            )

        if rows:
            self._write(work)

    def rating_history(self, kind: str | None = None) -> list[RatingRow]:
        query = "SELECT kind, member, value, low, high, games, time FROM ratings"
        args: tuple = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        return [RatingRow(*row) for row in self._conn.execute(query + " ORDER BY time, id", args)]
