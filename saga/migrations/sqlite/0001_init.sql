-- sinew-saga schema version 1 (SQLite).
CREATE TABLE IF NOT EXISTS sinew_saga_instances (
    id               TEXT    PRIMARY KEY,
    saga_type        TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    data             TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    deadline         INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    reason           TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sinew_saga_instances_active
    ON sinew_saga_instances (status, lease_until);
CREATE INDEX IF NOT EXISTS sinew_saga_instances_created
    ON sinew_saga_instances (created_at);
CREATE TABLE IF NOT EXISTS sinew_saga_steps (
    saga_id         TEXT    NOT NULL REFERENCES sinew_saga_instances (id) ON DELETE CASCADE,
    step            TEXT    NOT NULL,
    phase           TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    idempotency_key TEXT    NOT NULL,
    output          TEXT,
    error           TEXT,
    correlation_key TEXT,
    due_at          INTEGER,
    seq             INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    reply           TEXT,
    PRIMARY KEY (saga_id, step, phase)
);
CREATE INDEX IF NOT EXISTS sinew_saga_steps_correlation
    ON sinew_saga_steps (correlation_key);
