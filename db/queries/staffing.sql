-- The staff closed loop. Every read takes :site_ids (NULL = all sites, an empty array = none).

-- name: insert_worker$
INSERT INTO site_workers (id, site_id, name, post, red_zone)
VALUES (:id, :site_id, :name, :post, :red_zone)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_workers
SELECT id, site_id, name, post, red_zone, active, status, isolation_until, version, created_at
FROM site_workers
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: lock_worker^
SELECT id, site_id, name, post, red_zone, active, status, isolation_until, version, created_at
FROM site_workers
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: site_workers
SELECT id, site_id, name, post, red_zone, active, status, isolation_until, version, created_at
FROM site_workers
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (:after_post::text IS NULL OR (post, name, id) > (:after_post::text, :after_name::text, :after_id::uuid))
ORDER BY post, name, id
LIMIT :limit;

-- name: set_status$
UPDATE site_workers SET status = :status, isolation_until = :isolation_until, version = version + 1, updated_at = now()
WHERE id = :id AND version = :version
RETURNING id;

-- name: loops
-- Each worker's status with the last swab and its result (one statement).
SELECT w.id AS worker_id, w.site_id, w.post, w.red_zone, w.status, w.isolation_until, w.version,
       s.collected_at AS last_swab_at, s.result AS last_result
FROM site_workers w
LEFT JOIN LATERAL (
    SELECT x.collected_at, x.result FROM staff_samples x WHERE x.worker_id = w.id ORDER BY x.collected_at DESC, x.id LIMIT 1
) s ON true
WHERE w.id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR w.site_id = ANY(:site_ids::uuid[]));

-- name: tests_due
-- Active workers of a site whose next swab (last swab's local date + the post's interval, or today
-- when never swabbed) falls on :today or earlier. Intervals come from the model as parameters.
WITH intervals AS (
    SELECT p AS post, d AS days FROM unnest(:posts::text[], :days::int[]) AS i(p, d)
), due AS (
    SELECT w.id, w.name, w.post, w.red_zone, w.status,
           CASE WHEN w.red_zone THEN :red_zone_days::int ELSE i.days END AS every,
           (SELECT max(x.collected_at) FROM staff_samples x WHERE x.worker_id = w.id) AS last_swab_at
    FROM site_workers w JOIN intervals i ON i.post = w.post
    WHERE w.site_id = :site_id AND (:site_ids::uuid[] IS NULL OR w.site_id = ANY(:site_ids::uuid[])) AND w.active
)
SELECT id AS worker_id, name, post, red_zone, status, every AS test_every_days, last_swab_at,
       coalesce((last_swab_at AT TIME ZONE :time_zone)::date + every, :today::date) AS due_on
FROM due
WHERE coalesce((last_swab_at AT TIME ZONE :time_zone)::date + every, :today::date) <= :today::date
ORDER BY due_on, red_zone DESC, post, name, id;

-- name: insert_shift$
INSERT INTO staff_shifts (id, site_id, worker_id, post, red_zone, floor, starts_at, ends_at, created_by)
VALUES (:id, :site_id, :worker_id, :post, :red_zone, :floor, :starts_at, :ends_at, :actor)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_shifts
SELECT id, site_id, worker_id, post, red_zone, floor, starts_at, ends_at, created_by, created_at
FROM staff_shifts
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: overlapping_shift^
SELECT id FROM staff_shifts
WHERE worker_id = :worker_id AND id <> :id AND tstzrange(starts_at, ends_at) && tstzrange(:starts_at, :ends_at)
LIMIT 1;

-- name: site_shifts
-- The roster: shifts overlapping [since, until), by start.
SELECT id, site_id, worker_id, post, red_zone, floor, starts_at, ends_at, created_by, created_at
FROM staff_shifts
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND starts_at < :until AND ends_at > :since
ORDER BY starts_at, id
LIMIT 500;

-- name: insert_checkin$
INSERT INTO staff_checkins (id, site_id, worker_id, recorded_at, temperature_c, spo2, symptoms, note, findings, recorded_by)
VALUES (:id, :site_id, :worker_id, :recorded_at, :temperature_c, :spo2, :symptoms, :note, :findings, :actor)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_checkins
SELECT id, site_id, worker_id, recorded_at, temperature_c::float8 AS temperature_c, spo2, symptoms, note, findings, recorded_by, received_at
FROM staff_checkins
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: worker_checkins
SELECT id, site_id, worker_id, recorded_at, temperature_c::float8 AS temperature_c, spo2, symptoms, note, findings, recorded_by, received_at
FROM staff_checkins
WHERE worker_id = ANY(:worker_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY worker_id, recorded_at DESC, id
LIMIT 500;

-- name: insert_sample$
INSERT INTO staff_samples (id, site_id, worker_id, barcode, kind, collected_at, recorded_by)
VALUES (:id, :site_id, :worker_id, :barcode, :kind, :collected_at, :actor)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_samples
SELECT id, site_id, worker_id, barcode, kind, collected_at, result, resulted_at, recorded_by
FROM staff_samples
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: lock_sample^
SELECT id, site_id, worker_id, barcode, kind, collected_at, result, resulted_at, recorded_by
FROM staff_samples
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: lock_samples_by_barcode
SELECT id, site_id, worker_id, barcode, kind, collected_at, result, resulted_at, recorded_by
FROM staff_samples
WHERE barcode = ANY(:barcodes::text[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY id
FOR UPDATE;

-- name: set_result$
UPDATE staff_samples SET result = :result, resulted_at = COALESCE(:resulted_at, now())
WHERE id = :id AND result = 'pending'
RETURNING id;

-- name: worker_samples
SELECT id, site_id, worker_id, barcode, kind, collected_at, result, resulted_at, recorded_by
FROM staff_samples
WHERE worker_id = ANY(:worker_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY worker_id, collected_at DESC, id
LIMIT 500;

-- name: open_exposures
-- Workers of shifts on the floor at the site since :since are exposed to the source case (one open
-- review per worker and case; an existing one is kept).
INSERT INTO staff_exposures (site_id, worker_id, source_stay_id, floor, note)
SELECT DISTINCT x.site_id, x.worker_id, :source_stay_id::uuid, :floor::int, :note
FROM staff_shifts x
WHERE x.site_id = :site_id AND x.floor = :floor::int AND x.ends_at > :since AND x.starts_at <= now()
ON CONFLICT (worker_id, source_stay_id) WHERE state = 'open' DO NOTHING
RETURNING id;

-- name: get_exposures
SELECT id, site_id, worker_id, source_stay_id, floor, state, opened_at, decided_by, decided_at, note, version
FROM staff_exposures
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: site_exposures
SELECT id, site_id, worker_id, source_stay_id, floor, state, opened_at, decided_by, decided_at, note, version
FROM staff_exposures
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (:state::text IS NULL OR state = :state::text)
ORDER BY opened_at DESC, id
LIMIT 500;

-- name: lock_exposure^
SELECT id, site_id, worker_id, source_stay_id, floor, state, opened_at, decided_by, decided_at, note, version
FROM staff_exposures
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: decide_exposure$
UPDATE staff_exposures SET state = :state, decided_by = :actor, decided_at = now(), note = :note, version = version + 1
WHERE id = :id AND version = :version AND state = 'open'
RETURNING id;
