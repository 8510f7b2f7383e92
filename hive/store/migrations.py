"""Schema migrations, by version (SQLite's user_version). Append; never edit a shipped step."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # v1: the spine
    """
    CREATE TABLE agents (
        name TEXT PRIMARY KEY,
        parent TEXT NOT NULL DEFAULT '',
        config BLOB NOT NULL,
        created_at REAL NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        failed_reason TEXT NOT NULL DEFAULT '',
        needs_login INTEGER NOT NULL DEFAULT 0,
        needs_update INTEGER NOT NULL DEFAULT 0,
        model TEXT NOT NULL DEFAULT '',
        status_text TEXT NOT NULL DEFAULT '',
        status_set_at REAL,
        destroyed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        ts REAL NOT NULL,
        meta BLOB,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered')),
        delivered_at REAL,
        delivered_by TEXT,
        turn_id INTEGER
    );
    CREATE INDEX messages_pending ON messages (recipient, id) WHERE state = 'pending';
    CREATE INDEX messages_recipient ON messages (recipient, id);
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY,
        agent TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        exit_class TEXT,
        exit_code INTEGER,
        detail TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        message_ids BLOB,
        kick_note TEXT
    );
    CREATE INDEX turns_agent ON turns (agent, id);
    CREATE TABLE turn_events (
        turn_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        data BLOB,
        PRIMARY KEY (turn_id, seq)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        agent TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,
        data BLOB
    );
    CREATE INDEX events_agent ON events (agent, id);
    CREATE TABLE approvals (
        id INTEGER PRIMARY KEY,
        agent TEXT NOT NULL,
        kind TEXT NOT NULL,
        requested_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        description TEXT NOT NULL DEFAULT '',
        payload BLOB,
        expires_at REAL,
        resolved_at REAL,
        resolution BLOB
    );
    CREATE INDEX approvals_status ON approvals (status, id);
    CREATE TABLE stats (
        agent TEXT NOT NULL,
        ts REAL NOT NULL,
        key TEXT NOT NULL,
        value REAL NOT NULL
    );
    CREATE INDEX stats_agent_key ON stats (agent, key, ts);
    """,
    # v2: the control plane (approvals actor, lifecycle, spawn drafts, scheduled prompts)
    """
    ALTER TABLE agents ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agents ADD COLUMN deployed_sha TEXT NOT NULL DEFAULT '';
    CREATE INDEX approvals_agent ON approvals (agent, id);
    CREATE TABLE drafts (
        name TEXT PRIMARY KEY,
        requested_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        base_sha TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE scheduled_prompts (
        id INTEGER PRIMARY KEY,
        agent TEXT NOT NULL,
        at REAL NOT NULL,
        body TEXT NOT NULL,
        requested_by TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'scheduled'
            CHECK (state IN ('scheduled', 'delivered', 'cancelled', 'failed')),
        message_id INTEGER,
        done_at REAL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX scheduled_prompts_due ON scheduled_prompts (at) WHERE state = 'scheduled';
    """,
    # v3: a kick is stored before it is acknowledged (NULL: none outstanding); retention
    # prunes old rows by age in small batches, so the age columns are indexed.
    """
    ALTER TABLE agents ADD COLUMN kick_note TEXT;
    CREATE INDEX messages_delivered ON messages (delivered_at) WHERE state = 'delivered';
    CREATE INDEX turns_ended ON turns (ended_at) WHERE ended_at IS NOT NULL;
    CREATE INDEX events_ts ON events (ts);
    CREATE INDEX approvals_resolved ON approvals (resolved_at) WHERE status != 'pending';
    """,
    # v4. Federation (docs/federation.md): the outbox of messages for other hives, each
    # link's sequence on both ends, and the (origin, origin id) key that keeps a message
    # from another hive from being stored twice. The console (docs/dashboard.md): the
    # attention inbox (hive.attention), one open item per key with the operator's state of
    # each, listed by severity then time; and what each turn cost (hive.spend), for the cost
    # views and the daily budgets.
    """
    CREATE TABLE fed_outbox (
        id INTEGER PRIMARY KEY,
        dest TEXT NOT NULL,
        seq INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE UNIQUE INDEX fed_outbox_dest_seq ON fed_outbox (dest, seq);
    CREATE TABLE fed_links_out (dest TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    CREATE TABLE fed_links_in (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    ALTER TABLE messages ADD COLUMN origin TEXT;
    ALTER TABLE messages ADD COLUMN origin_id INTEGER;
    CREATE UNIQUE INDEX messages_origin ON messages (origin, origin_id)
        WHERE origin IS NOT NULL;
    CREATE TABLE attention (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity INTEGER NOT NULL,
        agent TEXT NOT NULL DEFAULT '',
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        link TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        count INTEGER NOT NULL DEFAULT 1,
        state TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'seen', 'done')),
        expires_at REAL,
        done_at REAL
    );
    CREATE UNIQUE INDEX attention_open_key ON attention (key) WHERE state != 'done';
    CREATE INDEX attention_list ON attention (state, severity, updated_at);
    CREATE INDEX attention_done ON attention (done_at) WHERE state = 'done';
    CREATE TABLE turn_usage (
        turn_id INTEGER PRIMARY KEY,
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        ts REAL NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_creation_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL
    );
    CREATE INDEX turn_usage_ts ON turn_usage (ts, agent);
    """,
    # v5: the operator's "let it spend today" (a reset while over budget) outlives a restart.
    """
    ALTER TABLE agents ADD COLUMN budget_waived_day TEXT NOT NULL DEFAULT '';
    """,
    # v6: link epochs (docs/federation.md, "Epochs"). Each start of a hive begins a new
    # epoch of its outgoing links, so a hive restored from an older backup, which gives
    # out again message ids and link numbers its peers have stored, is not taken for a
    # repeat. 0 is the epoch of everything written before this step.
    """
    CREATE TABLE fed_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL);
    ALTER TABLE fed_outbox ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE fed_links_out ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE fed_links_out ADD COLUMN epoch_first INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE fed_links_in ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN origin_epoch INTEGER;
    UPDATE messages SET origin_epoch = 0 WHERE origin IS NOT NULL;
    DROP INDEX messages_origin;
    CREATE UNIQUE INDEX messages_origin ON messages (origin, origin_epoch, origin_id)
        WHERE origin IS NOT NULL;
    """,
]
