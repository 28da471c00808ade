"""Conversations on disk: one SQLite file (WAL) in `qwq_chat.app.paths.data_dir()`.

Why SQLite: a chat must survive `kill -9` mid-answer. The session writes the partial answer as it
streams (status "unfinished") and marks it "finished" at the end, each write its own transaction,
so a restart finds everything that was generated.

Thread use: the session writes from a worker thread while the UI reads, so the one connection is
shared (`check_same_thread=False`) behind a lock.

A corrupt or locked file is never deleted or rewritten: `open_store()` then falls back to an
in-memory store and sets `Store.warning`, which the UI shows; the app stays usable.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwq_chat.app import paths
from qwq_chat.app.messages import FINISHED, Message

DB_FILE_NAME = "chats.db"

# Versioned migrations: MIGRATIONS[i] takes the schema from version i to i + 1 (PRAGMA user_version).
MIGRATIONS: list[str] = [
    # 0 -> 1
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL DEFAULT 'New chat',
        model TEXT,
        settings TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL DEFAULT '',
        reasoning TEXT NOT NULL DEFAULT '',
        tool_calls TEXT NOT NULL DEFAULT '[]',
        tool_call_id TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'finished',
        finish_reason TEXT,
        stats TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (conversation_id, position)
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, position);
    CREATE INDEX conversations_by_update ON conversations(updated_at DESC);
    """,
    # 1 -> 2: remember whether the reasoning ever closed (shown as "unfinished" in the UI)
    """
    ALTER TABLE messages ADD COLUMN reasoning_unfinished INTEGER NOT NULL DEFAULT 0;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The database could not be opened or used (corrupt, locked, newer schema)."""


@dataclass
class ConversationInfo:
    id: str
    title: str
    model: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    message_count: int = 0


def default_db_path() -> Path:
    return paths.data_dir() / DB_FILE_NAME


class Store:
    """All reads and writes of conversations and messages. Open with `open_store()`."""

    def __init__(self, path: str | Path, timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self.in_memory = self.path == ":memory:"
        self.warning: str | None = None
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=timeout_s, check_same_thread=False, isolation_level=None
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA foreign_keys = ON")
            if not self.in_memory:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            conn = getattr(self, "_conn", None)
            if conn is not None:
                conn.close()
            raise StoreError(str(exc)) from exc

    # -- schema ----------------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {version} is newer than this qwq-chat ({SCHEMA_VERSION})"
            )
        for target in range(version, SCHEMA_VERSION):
            with self._tx() as c:  # one transaction per step: a crash leaves a valid version
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version = {target + 1}")

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- conversations ---------------------------------------------------------------------------

    def create_conversation(
        self,
        title: str = "New chat",
        model: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> str:
        conv_id = uuid.uuid4().hex
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO conversations (id, title, model, settings, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (conv_id, title, model, json.dumps(settings or {}), now, now),
            )
        return conv_id

    def _info(self, row: sqlite3.Row) -> ConversationInfo:
        return ConversationInfo(
            id=row["id"],
            title=row["title"],
            model=row["model"],
            settings=json.loads(row["settings"] or "{}"),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            message_count=row["n"],
        )

    _INFO_SQL = (
        "SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS n"
        " FROM conversations c"
    )

    def get_conversation(self, conv_id: str) -> ConversationInfo | None:
        rows = self._query(self._INFO_SQL + " WHERE c.id = ?", (conv_id,))
        return self._info(rows[0]) if rows else None

    def list_conversations(self, limit: int | None = None) -> list[ConversationInfo]:
        """Most recently updated first."""
        sql = self._INFO_SQL + " ORDER BY c.updated_at DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._info(r) for r in self._query(sql)]

    def search(self, text: str) -> list[ConversationInfo]:
        """Conversations whose title, answers or reasoning contain `text` (case-insensitive)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sql = (
            self._INFO_SQL
            + " WHERE c.title LIKE ?1 ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m"
            " WHERE m.conversation_id = c.id AND (m.content LIKE ?1 ESCAPE '\\'"
            " OR m.reasoning LIKE ?1 ESCAPE '\\')) ORDER BY c.updated_at DESC"
        )
        return [self._info(r) for r in self._query(sql, (pattern,))]

    def rename(self, conv_id: str, title: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE conversations SET title = ?, updated_at = ? WHERE id = ?",
                (title, time.time(), conv_id),
            )

    def delete(self, conv_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))

    def get_settings(self, conv_id: str) -> dict[str, Any]:
        """Per-conversation settings: e.g. {"system_prompt": ..., "sampling": {...}}."""
        info = self.get_conversation(conv_id)
        return info.settings if info else {}

    def set_settings(self, conv_id: str, settings: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE conversations SET settings = ?, updated_at = ? WHERE id = ?",
                (json.dumps(settings), time.time(), conv_id),
            )

    # -- messages --------------------------------------------------------------------------------

    def messages(self, conv_id: str) -> list[Message]:
        rows = self._query(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY position", (conv_id,)
        )
        return [_message(r) for r in rows]

    def add_message(self, conv_id: str, message: Message) -> Message:
        """Append `message` at the end; sets its id and position and returns it."""
        now = time.time()
        with self._tx() as c:
            row = c.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM messages WHERE conversation_id = ?",
                (conv_id,),
            ).fetchone()
            message.position = row[0]
            message.created_at = message.created_at or now
            cur = c.execute(
                "INSERT INTO messages (conversation_id, position, role, content, reasoning,"
                " tool_calls, tool_call_id, name, status, finish_reason, stats, created_at,"
                " updated_at, reasoning_unfinished) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (conv_id, message.position, message.role, *_mutable(message), message.created_at, now,
                 int(message.reasoning_unfinished)),
            )  # fmt: skip
            message.id = cur.lastrowid
            c.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conv_id))
        return message

    def update_message(self, message: Message) -> None:
        """Write the message's text, tool calls, status and stats (called while streaming, too)."""
        if message.id is None:
            raise ValueError("message was never added to the store")
        now = time.time()
        with self._tx() as c:
            c.execute(
                "UPDATE messages SET content = ?, reasoning = ?, tool_calls = ?, tool_call_id = ?,"
                " name = ?, status = ?, finish_reason = ?, stats = ?, updated_at = ?,"
                " reasoning_unfinished = ? WHERE id = ?",
                (*_mutable(message), now, int(message.reasoning_unfinished), message.id),
            )

    def truncate(self, conv_id: str, from_position: int) -> None:
        """Delete the messages at `from_position` and after (regenerate, edit and resend)."""
        with self._tx() as c:
            c.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                (conv_id, from_position),
            )
            c.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conv_id)
            )


def _mutable(m: Message) -> tuple[Any, ...]:
    return (
        m.content,
        m.reasoning,
        json.dumps(m.tool_calls),
        m.tool_call_id,
        m.name,
        m.status,
        m.finish_reason,
        json.dumps(m.stats) if m.stats is not None else None,
    )


def _message(row: sqlite3.Row) -> Message:
    return Message(
        role=row["role"],
        content=row["content"],
        reasoning=row["reasoning"],
        tool_calls=json.loads(row["tool_calls"] or "[]"),
        tool_call_id=row["tool_call_id"],
        name=row["name"],
        status=row["status"] or FINISHED,
        finish_reason=row["finish_reason"],
        reasoning_unfinished=bool(row["reasoning_unfinished"]),
        stats=json.loads(row["stats"]) if row["stats"] else None,
        id=row["id"],
        position=row["position"],
        created_at=row["created_at"],
    )


def open_store(path: str | Path | None = None, timeout_s: float = 5.0) -> Store:
    """Open the conversation database; if it is corrupt or locked, keep the file and fall back.

    The fallback is an in-memory store with `warning` set to a message for the user: what is wrong,
    that the file was left untouched, and what to do.
    """
    db_path = Path(path) if path is not None else default_db_path()
    try:
        return Store(db_path, timeout_s=timeout_s)
    except StoreError as exc:
        store = Store(":memory:")
        store.warning = (
            f"cannot use the conversation database {db_path} ({exc}). The file was left untouched; "
            "chats in this session are kept in memory only and will not be saved. "
            "If another qwq-chat is running, close it; if the file is damaged, move it aside "
            f"(e.g. to {db_path.name}.broken) to start a fresh one, or restore a backup."
        )
        return store
