-- The change feed's cut-off, scoped to qsite's own transactions; indexes for the retention job.

-- The feed (bus.read_events) returns only events of transactions below this horizon, so that
-- an event committed later can never land behind a cursor already handed out. Events carry
-- their writer's transaction id (events.txid); every transaction that could still commit an
-- event with a lower id must hold the horizon back, and no other may:
--
--   * in progress when the snapshot below is taken (in its xip list) -- a transaction that
--     starts later gets a higher id than the snapshot's xmax, which bounds the horizon;
--   * a qsite session of THIS database: each pooled connection takes the shared advisory
--     lock (7140009, 1) when it connects (service/db.py FEED_WRITER_LOCK), so long
--     transactions of other databases, of psql, reports or backups do not stall the feed
--     as the cluster-wide pg_snapshot_xmin did.
--
-- Order matters: the snapshot first, then the lock table (pg_locks is read live and
-- consistently, unlike pg_stat_activity, which is cached per transaction). A transaction in
-- the snapshot but gone from the lock table has finished, and the feed statement, run after
-- this function with a newer snapshot, sees its events. pg_locks holds 32-bit xids; they are
-- matched to the snapshot's 64-bit ones on their low 32 bits.
CREATE FUNCTION feed_horizon() RETURNS xid8
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    snap pg_snapshot := pg_current_snapshot();
    horizon xid8;
BEGIN
    SELECT min(x) INTO horizon
    FROM pg_snapshot_xip(snap) AS x
    WHERE (x::text::bigint % 4294967296) IN (
        SELECT own.transactionid::text::bigint
        FROM pg_locks AS writer
        JOIN pg_locks AS own ON own.pid = writer.pid
        WHERE writer.locktype = 'advisory' AND writer.classid = 7140009 AND writer.objid = 1 AND writer.objsubid = 2
          AND writer.granted
          AND writer.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND own.locktype = 'transactionid' AND own.mode = 'ExclusiveLock' AND own.granted
    );
    RETURN coalesce(horizon, pg_snapshot_xmax(snap));
END
$$;

-- Retention scans by age: expired refresh tokens, finished webhook deliveries.
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
CREATE INDEX supply_webhook_deliveries_done_idx ON supply_webhook_deliveries (created_at) WHERE state <> 'pending';
