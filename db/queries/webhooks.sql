-- Webhooks of every integration (service/webhooks): registration, fan-out cursors, deliveries.

-- name: insert_webhook^
INSERT INTO webhooks (id, owner, owner_role, site_ids, facility_id, url, events, api, feed_cursor)
VALUES (:id, :owner, :owner_role, :site_ids::uuid[], :facility_id, :url, :events, :api, :feed_cursor)
RETURNING id, url, events, api, active, created_at;

-- name: list_webhooks
SELECT id, url, events, api, active, created_at
FROM webhooks
WHERE owner = :owner AND active AND (:api::text IS NULL OR api = :api::text)
ORDER BY created_at, id;

-- name: deactivate_webhook^
UPDATE webhooks SET active = false
WHERE id = :id AND owner = :owner AND active AND (:api::text IS NULL OR api = :api::text)
RETURNING id, api;

-- name: deactivate_ownerless!
-- A revoked API key's or a disabled account's webhooks stop: fan-out runs this first.
UPDATE webhooks w SET active = false
WHERE active
  AND (EXISTS (SELECT 1 FROM api_clients c WHERE w.owner = 'client:' || c.id::text AND c.revoked_at IS NOT NULL)
       OR EXISTS (SELECT 1 FROM staff s WHERE w.owner = 'staff:' || s.id::text AND NOT s.active));

-- name: lock_active_webhooks
-- Fan-out: one instance at a time per webhook; the owner as it registered (role, sites, facility).
SELECT id, owner, owner_role, site_ids, facility_id, events, feed_cursor
FROM webhooks
WHERE active
ORDER BY id
FOR UPDATE SKIP LOCKED;

-- name: advance_webhook_cursor!
UPDATE webhooks SET feed_cursor = :feed_cursor WHERE id = :id;

-- name: insert_delivery!
INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload)
VALUES (:webhook_id, :event_id, :event_type, :payload)
ON CONFLICT (webhook_id, event_id) DO NOTHING;

-- name: due_deliveries
SELECT d.id, d.webhook_id, d.event_id, d.event_type, d.payload, d.attempts, w.url
FROM webhook_deliveries d
JOIN webhooks w ON w.id = d.webhook_id
WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND w.active
ORDER BY d.next_attempt_at, d.id
LIMIT :limit;

-- name: delivery_succeeded!
UPDATE webhook_deliveries
SET state = 'delivered', attempts = attempts + 1, last_status = :status, last_error = NULL, delivered_at = now()
WHERE id = :id;

-- name: delivery_failed!
UPDATE webhook_deliveries
SET attempts = attempts + 1, last_status = :status, last_error = :error,
    state = CASE WHEN attempts + 1 >= :max_attempts THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => :backoff_s)
WHERE id = :id;

-- name: list_deliveries
SELECT d.id, d.event_id, d.event_type, d.state, d.attempts, d.last_status, d.created_at, d.delivered_at
FROM webhook_deliveries d
JOIN webhooks w ON w.id = d.webhook_id
WHERE w.id = :webhook_id AND w.owner = :owner AND (:api::text IS NULL OR w.api = :api::text)
ORDER BY d.id DESC
LIMIT :limit;

-- name: owns_webhook$
SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = :id AND owner = :owner AND active AND (:api::text IS NULL OR api = :api::text));

-- name: purge_deliveries!
-- Retention: one batch of deliveries delivered or failed more than :days days ago. Pending
-- ones stay whatever their age (each carries its own copy of the event it delivers).
DELETE FROM webhook_deliveries WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM webhook_deliveries
    WHERE state <> 'pending' AND created_at < now() - make_interval(days => :days)
    LIMIT :batch FOR UPDATE SKIP LOCKED));

-- name: active_webhook_cursors
-- Where each active webhook's fan-out stands in the event feed: retention keeps what follows.
SELECT feed_cursor FROM webhooks WHERE active AND feed_cursor IS NOT NULL;
