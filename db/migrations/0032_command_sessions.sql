-- Browser sessions of the command dashboard (/command, service/command). The cookie holds a
-- random token; only its SHA-256 is stored. A session ends at logout (ended_at), after an
-- absolute lifetime (expires_at) or after QSITE_COMMAND_SESSION_IDLE_MINUTES without a request
-- (last_seen_at). The account's role and sites are read afresh on every request, never kept here.
CREATE TABLE command_sessions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash    bytea NOT NULL UNIQUE,
    staff_id      uuid NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    CHECK (expires_at > created_at)
);
-- Retention deletes by age.
CREATE INDEX command_sessions_expires_idx ON command_sessions (expires_at);
