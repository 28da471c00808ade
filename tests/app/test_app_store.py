"""The SQLite store: CRUD, search, migrations, and never losing or deleting a database file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from qwq_chat.app.messages import UNFINISHED, Message
from qwq_chat.app.store import MIGRATIONS, SCHEMA_VERSION, Store, default_db_path, open_store


def test_conversations_and_messages_round_trip() -> None:
    store = open_store()
    assert store.warning is None and not store.in_memory
    assert Path(store.path) == default_db_path()
    conv = store.create_conversation(
        "First", model="m.gguf", settings={"system_prompt": "be brief"}
    )
    store.add_message(conv, Message("user", "What is 2+2?"))
    answer = store.add_message(
        conv, Message("assistant", content="4", reasoning="2+2=4", status=UNFINISHED)
    )
    answer.tool_calls = [{"id": "c1", "name": "calculator", "arguments": {"expression": "2+2"}}]
    answer.stats = {"prompt_tokens": 5}
    answer.status = "finished"
    answer.reasoning_unfinished = True
    store.update_message(answer)
    store.close()

    again = Store(default_db_path())
    [info] = again.list_conversations()
    assert (info.title, info.model, info.message_count) == ("First", "m.gguf", 2)
    assert again.get_settings(conv) == {"system_prompt": "be brief"}
    user, assistant = again.messages(conv)
    assert (user.role, user.content, user.position) == ("user", "What is 2+2?", 0)
    assert (assistant.content, assistant.reasoning) == ("4", "2+2=4")  # stored apart
    assert assistant.tool_calls[0]["arguments"] == {"expression": "2+2"}
    assert assistant.stats == {"prompt_tokens": 5} and assistant.reasoning_unfinished
    assert again._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_search_rename_delete_truncate() -> None:
    store = open_store()
    a = store.create_conversation("Cooking")
    b = store.create_conversation("Math")
    store.add_message(a, Message("user", "pasta recipe"))
    store.add_message(b, Message("assistant", content="x", reasoning="100% sure about primes"))
    assert [c.id for c in store.search("PASTA")] == [a]
    assert [c.id for c in store.search("100%")] == [b]  # LIKE wildcards are escaped
    assert store.search("1000%") == []
    assert [c.id for c in store.search("cook")] == [a]  # titles are searched too
    store.rename(b, "Primes")
    assert store.get_conversation(b).title == "Primes"
    store.add_message(a, Message("assistant", "boil water"))
    store.add_message(a, Message("user", "more"))
    store.truncate(a, 1)
    assert [m.content for m in store.messages(a)] == ["pasta recipe"]
    store.delete(a)
    assert store.get_conversation(a) is None and store.messages(a) == []
    assert store.list_conversations()[0].id == b


def test_migrates_a_version_1_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT INTO conversations VALUES ('c', 'Old', NULL, '{}', 1.0, 1.0)")
    conn.execute(
        "INSERT INTO messages (conversation_id, position, role, content, created_at, updated_at)"
        " VALUES ('c', 0, 'user', 'hello', 1.0, 1.0)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION
    [message] = store.messages("c")
    assert message.content == "hello" and message.reasoning_unfinished is False


def test_corrupt_database_is_kept_and_app_still_works(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    garbage = b"this is not sqlite" * 500
    path.write_bytes(garbage)
    store = open_store(path)
    assert store.in_memory
    assert store.warning is not None
    assert str(path) in store.warning and "left untouched" in store.warning
    conv = store.create_conversation("still usable")
    store.add_message(conv, Message("user", "hi"))
    assert store.messages(conv)[0].content == "hi"
    assert path.read_bytes() == garbage  # never deleted nor rewritten


def test_newer_schema_is_refused_not_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    store = open_store(path)
    assert store.in_memory and "newer" in (store.warning or "")
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 99


def test_locked_database_falls_back_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    Store(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        fallback = open_store(path, timeout_s=0.2)
        assert fallback.in_memory and "locked" in (fallback.warning or "")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert Store(path).schema_version == SCHEMA_VERSION  # the file is intact afterwards
