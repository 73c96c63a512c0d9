-- The transactional outbox of sinew-messaging on SQLite (feature `sqlite`).
-- `sinew_outbox` is the table name. Times are Unix seconds (REAL).
CREATE TABLE IF NOT EXISTS sinew_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_id TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    headers TEXT NOT NULL DEFAULT '{}',
    body BLOB NOT NULL,
    created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    last_error TEXT,
    failed_at REAL,
    sent_at REAL
);
-- Unsent rows in id order (the relay's scan).
CREATE INDEX IF NOT EXISTS sinew_outbox_unsent ON sinew_outbox (id) WHERE sent_at IS NULL;
-- Each aggregate's unsent rows in order (the relay's head check and chains).
CREATE INDEX IF NOT EXISTS sinew_outbox_unsent_aggregate ON sinew_outbox (aggregate_id, id) WHERE sent_at IS NULL;
-- Retention of sent rows.
CREATE INDEX IF NOT EXISTS sinew_outbox_sent_at ON sinew_outbox (sent_at) WHERE sent_at IS NOT NULL;
