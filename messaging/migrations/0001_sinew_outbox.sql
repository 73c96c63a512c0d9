-- The transactional outbox of sinew-messaging (feature `postgres`).
-- `sinew_outbox` is the table name, `sinew_outbox` its unqualified part (index names take no schema).
CREATE TABLE IF NOT EXISTS sinew_outbox (
    id bigserial PRIMARY KEY,
    aggregate_id text NOT NULL,
    routing_key text NOT NULL,
    message_id text NOT NULL,
    content_type text NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}',
    body bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    failed_at timestamptz,
    sent_at timestamptz
);
-- Unsent rows in id order (the relay's scan) and per aggregate (its ordering check).
CREATE INDEX IF NOT EXISTS sinew_outbox_unsent ON sinew_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS sinew_outbox_unsent_aggregate ON sinew_outbox (aggregate_id, id) WHERE sent_at IS NULL;
-- Retention of sent rows.
CREATE INDEX IF NOT EXISTS sinew_outbox_sent_at ON sinew_outbox (sent_at) WHERE sent_at IS NOT NULL;
