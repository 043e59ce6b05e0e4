"""Numbered schema migrations; each runs once, in order, inside one transaction."""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: sessions, invites, the document update log and snapshots, audit events.
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        base_blob TEXT NOT NULL,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        required_approvals INTEGER NOT NULL DEFAULT 1
    );
    CREATE TABLE invites (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        expires_at REAL,
        revoked_at REAL
    );
    CREATE INDEX invites_session ON invites(session_id);
    CREATE TABLE doc_updates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        data BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX doc_updates_session ON doc_updates(session_id, id);
    CREATE TABLE doc_snapshots (
        session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
        data BLOB NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_session ON audit(session_id, at);
    """,
    # 2: the embedded job queue (leases, retries, priority then round-robin by session).
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        pin_id TEXT NOT NULL,
        status TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        lease_owner TEXT,
        lease_expires REAL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        error TEXT,
        layer_id TEXT,
        -- The finished layer (JSON), kept until it is in the session's document.
        result TEXT,
        published INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_queued ON jobs(status, priority, seq);
    CREATE INDEX jobs_session ON jobs(session_id, seq);
    CREATE TABLE queue_turns (
        session_id TEXT PRIMARY KEY,
        last_claimed REAL NOT NULL
    );
    """,
    # 3: the producer's index: per-session figures derived from review events (rebuildable
    # from the documents, so no foreign keys: it may briefly hold rows ahead of the sessions).
    """
    CREATE TABLE producer_sessions (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        last_activity REAL NOT NULL,
        versions INTEGER NOT NULL DEFAULT 0,
        pending INTEGER NOT NULL DEFAULT 0,
        approved INTEGER NOT NULL DEFAULT 0,
        changes_requested INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0,
        pins INTEGER NOT NULL DEFAULT 0,
        open_pins INTEGER NOT NULL DEFAULT 0,
        approved_pins INTEGER NOT NULL DEFAULT 0,
        rounds_sum INTEGER NOT NULL DEFAULT 0,
        median_to_approval REAL,
        last_approved_at REAL,
        -- JSON array of the times its approved versions were approved, ascending.
        approvals TEXT NOT NULL DEFAULT '[]',
        jobs_done INTEGER NOT NULL DEFAULT 0,
        jobs_failed INTEGER NOT NULL DEFAULT 0,
        jobs_cancelled INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX producer_sessions_created ON producer_sessions(created_at);
    CREATE TABLE producer_pins (
        session_id TEXT NOT NULL,
        pin_id TEXT NOT NULL,
        created_at REAL,
        status TEXT NOT NULL,
        first_approved_at REAL,
        rounds INTEGER,
        PRIMARY KEY (session_id, pin_id)
    ) WITHOUT ROWID;
    CREATE TABLE producer_layers (
        session_id TEXT NOT NULL,
        layer_id TEXT NOT NULL,
        pin_id TEXT,
        created_at REAL NOT NULL,
        state TEXT NOT NULL,
        approved_at REAL,
        PRIMARY KEY (session_id, layer_id)
    ) WITHOUT ROWID;
    CREATE INDEX producer_layers_state ON producer_layers(session_id, state);
    CREATE INDEX producer_layers_pin ON producer_layers(session_id, pin_id, created_at);
    CREATE TABLE producer_jobs (
        session_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (session_id, job_id)
    ) WITHOUT ROWID;
    """,
    # 4: the webhook outbox: one row per (event, endpoint), delivered at least once.
    """
    CREATE TABLE webhook_deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        url TEXT NOT NULL,
        event_type TEXT NOT NULL,
        session_id TEXT,
        body BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        last_attempt_at REAL,
        last_status INTEGER,
        last_error TEXT,
        finished_at REAL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
    """,
    # 5: the document log without AUTOINCREMENT. Its counter table was one more page
    # written by every commit (a fifth of a small commit's cost); ids still grow within a
    # session, because a new row's id is above every row that exists.
    """
    CREATE TABLE doc_updates_v5 (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        data BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    INSERT INTO doc_updates_v5 (id, session_id, data, created_at)
        SELECT id, session_id, data, created_at FROM doc_updates ORDER BY id;
    DROP TABLE doc_updates;
    ALTER TABLE doc_updates_v5 RENAME TO doc_updates;
    CREATE INDEX doc_updates_session ON doc_updates(session_id, id);
    """,
    # 6: people apart from doors. An invite is a role `link` (whoever opens it joins under a
    # name of their own) or `personal` (its token is one person's). Joining a link makes a
    # participant with its own token; the link's role, expiry and revocation bind it.
    # Before this, the five links made with a session were named "<Role> link" and every
    # other invite was named after its person: that tells them apart in existing data.
    # Audit rows carry the actor's name beside the id.
    """
    ALTER TABLE invites ADD COLUMN kind TEXT NOT NULL DEFAULT 'personal';
    UPDATE invites SET kind = 'link'
        WHERE name = upper(substr(role, 1, 1)) || substr(role, 2) || ' link';
    CREATE TABLE participants (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        invite_id TEXT NOT NULL REFERENCES invites(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        email TEXT,
        token_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    );
    CREATE INDEX participants_session ON participants(session_id, created_at);
    CREATE INDEX participants_invite ON participants(invite_id);
    ALTER TABLE audit ADD COLUMN actor_name TEXT;
    """,
    # 7: each Yjs client id of a session's document belongs to the person (user id) who
    # first wrote with it, or to the server (user id ''); the write guard refuses anyone
    # else's writes under it (a forged id would make its owner's next change a duplicate).
    # Ids written before this are claimed by their next writer.
    """
    CREATE TABLE doc_clients (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        client_id INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (session_id, client_id)
    ) WITHOUT ROWID;
    """,
    # 8: the producer's index knows each version's fix request (a round is one request, its
    # variants share it). The index counted variants as rounds before: empty it, so that it
    # is rebuilt from the documents at start (an empty index over existing sessions is).
    """
    ALTER TABLE producer_layers ADD COLUMN fix TEXT;
    DELETE FROM producer_sessions;
    DELETE FROM producer_pins;
    DELETE FROM producer_layers;
    DELETE FROM producer_jobs;
    """,
    # 9: job kinds and engines (a request names its engine), and lanes: hosted-engine jobs
    # run beside the local worker, so they are claimed apart. Jobs from before were edits
    # run by the server's one engine (engine NULL: the runner uses today's default).
    """
    ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'edit';
    ALTER TABLE jobs ADD COLUMN engine TEXT;
    ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'local';
    CREATE INDEX jobs_lane ON jobs(lane, status, seq);
    """,
    # 10: the producer's index counts each session's revisions (upscales and clips) and
    # how many are approved; sessions from before have none.
    """
    CREATE TABLE producer_revisions (
        session_id TEXT NOT NULL,
        revision_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL,
        PRIMARY KEY (session_id, revision_id)
    ) WITHOUT ROWID;
    ALTER TABLE producer_sessions ADD COLUMN revisions INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE producer_sessions ADD COLUMN approved_revisions INTEGER NOT NULL DEFAULT 0;
    """,
)
