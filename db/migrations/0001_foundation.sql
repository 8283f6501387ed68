-- Foundation: the outbox and idempotency keys. schema_migrations is created by the runner.

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    -- The transaction that wrote the event: the change feed orders by (txid, id)
    -- so that a reader never skips a transaction that commits late.
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    site_id     uuid,
    type        text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
    subject_id  uuid,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    actor       text,
    request_id  text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_feed_idx ON events (txid, id);
CREATE INDEX events_site_idx ON events (site_id, id);

CREATE TABLE idempotency_keys (
    principal    text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    status_code  int NOT NULL,
    response     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
