-- Resident care: vulnerability profiles, care requests, stock issued against them.
-- Every read takes :site_ids (NULL = all sites, an empty array = none).

-- name: get_profiles
SELECT stay_id, site_id, flags, note, version, updated_by, updated_at
FROM care_profiles
WHERE stay_id = ANY(:stay_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: flagged_stays
-- Which of these stays carry any flag (what staff without health-data access may know).
SELECT stay_id
FROM care_profiles
WHERE stay_id = ANY(:stay_ids::uuid[]) AND flags <> '{}' AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: upsert_profile^
-- Insert the first profile, or replace one at the version the caller read (NULL back: stale).
INSERT INTO care_profiles AS p (stay_id, site_id, flags, note, updated_by)
VALUES (:stay_id, :site_id, :flags, :note, :actor)
ON CONFLICT (stay_id) DO UPDATE SET
    flags = excluded.flags, note = excluded.note, updated_by = excluded.updated_by,
    version = p.version + 1, updated_at = now()
WHERE p.version = :version::int
RETURNING stay_id, site_id, flags, note, version, updated_by, updated_at;

-- name: insert_request$
-- A replayed client id inserts nothing (NULL back); the caller then reads the stored one.
INSERT INTO care_requests (id, site_id, stay_id, kind, detail, requested_by, due_at)
VALUES (:id, :site_id, :stay_id, :kind, :detail, :actor, now() + make_interval(secs => :sla_seconds))
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_requests
SELECT id, site_id, stay_id, kind, detail, state, version, requested_by, requested_at, due_at, started_by, started_at,
       closed_by, closed_at, resolution, coalesce(closed_at, now()) > due_at AS overdue
FROM care_requests
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: lock_request^
SELECT id, site_id, stay_id, kind, detail, state, version, requested_by, requested_at, due_at, started_by, started_at,
       closed_by, closed_at, resolution, coalesce(closed_at, now()) > due_at AS overdue
FROM care_requests
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: move_request$
UPDATE care_requests SET
    state = :to_state,
    version = version + 1,
    started_by = CASE WHEN :to_state = 'in_progress' THEN :actor ELSE started_by END,
    started_at = CASE WHEN :to_state = 'in_progress' THEN now() ELSE started_at END,
    closed_by = CASE WHEN :to_state IN ('done', 'declined') THEN :actor ELSE closed_by END,
    closed_at = CASE WHEN :to_state IN ('done', 'declined') THEN now() ELSE closed_at END,
    resolution = CASE WHEN :to_state IN ('done', 'declined') THEN :resolution ELSE resolution END
WHERE id = :id AND version = :version
RETURNING id;

-- name: site_requests
-- The worklist: open ones first by deadline, or (with :states) any, newest request first.
-- :open_only orders by due_at (the SLA worklist); otherwise by requested_at descending.
SELECT id, site_id, stay_id, kind, detail, state, version, requested_by, requested_at, due_at, started_by, started_at,
       closed_by, closed_at, resolution, coalesce(closed_at, now()) > due_at AS overdue
FROM care_requests
WHERE site_id = :site_id
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND state = ANY(:states::text[])
  AND (:kind::text IS NULL OR kind = :kind::text)
  AND (NOT :overdue_only::boolean OR coalesce(closed_at, now()) > due_at)
  AND (:after_at::timestamptz IS NULL OR (due_at, id) > (:after_at::timestamptz, :after_id::uuid))
ORDER BY due_at, id
LIMIT :limit;

-- name: stay_requests
SELECT id, site_id, stay_id, kind, detail, state, version, requested_by, requested_at, due_at, started_by, started_at,
       closed_by, closed_at, resolution, coalesce(closed_at, now()) > due_at AS overdue
FROM care_requests
WHERE stay_id = ANY(:stay_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY stay_id, requested_at DESC, id DESC;

-- name: insert_issue$
-- The ledger movement is the supplies domain's; this row links it to the request (a replay: nothing).
INSERT INTO care_issues (movement_id, request_id, site_id, item_id, quantity, actor)
VALUES (:movement_id, :request_id, :site_id, :item_id, :quantity, :actor)
ON CONFLICT (movement_id) DO NOTHING
RETURNING movement_id;

-- name: get_issue^
SELECT movement_id, request_id, site_id, item_id, quantity, actor, at
FROM care_issues
WHERE movement_id = :movement_id;

-- name: issues_of
SELECT movement_id, request_id, site_id, item_id, quantity, actor, at
FROM care_issues
WHERE request_id = ANY(:request_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY request_id, at, movement_id;

-- name: demo_backdate$
-- Demo seed only: move a request's times into the past (the seed runs in one transaction, so
-- every now() is the same); the deadline keeps the kind's SLA from the new request time.
UPDATE care_requests SET
    version = version + 1,
    requested_at = :requested_at,
    due_at = :requested_at::timestamptz + (due_at - requested_at),
    started_at = CASE WHEN started_at IS NULL THEN NULL ELSE :started_at::timestamptz END,
    closed_at = CASE WHEN closed_at IS NULL THEN NULL ELSE :closed_at::timestamptz END
WHERE id = :id
RETURNING id;
