-- Command dashboard sessions (db/migrations/0032). Tokens are looked up by SHA-256.

-- name: insert_session^
INSERT INTO command_sessions (token_hash, staff_id, expires_at)
VALUES (:token_hash, :staff_id, now() + make_interval(hours => :hours))
RETURNING id, expires_at;

-- name: live_session^
-- The staff account of a live session: not ended, not past its lifetime, not idle longer than
-- :idle_minutes. last_seen_at moves at most once a minute, so a polling page does not write a
-- row version every few seconds.
WITH live AS (
    SELECT id, staff_id, last_seen_at, expires_at FROM command_sessions
    WHERE token_hash = :token_hash
      AND ended_at IS NULL
      AND expires_at > now()
      AND last_seen_at > now() - make_interval(mins => :idle_minutes)
), seen AS (
    UPDATE command_sessions c SET last_seen_at = now()
    FROM live
    WHERE c.id = live.id AND live.last_seen_at < now() - interval '1 minute'
    RETURNING c.id
)
SELECT id, staff_id, expires_at FROM live;

-- name: end_session^
UPDATE command_sessions SET ended_at = now()
WHERE token_hash = :token_hash AND ended_at IS NULL
RETURNING id, staff_id;

-- name: purge_sessions!
-- Retention: one batch of sessions ended or expired more than a day ago.
DELETE FROM command_sessions WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM command_sessions
    WHERE least(expires_at, coalesce(ended_at, expires_at)) < now() - interval '1 day'
    LIMIT :batch FOR UPDATE SKIP LOCKED));
