-- Access: staff, refresh tokens, API clients, audit log.
-- Staff reads take :site_ids (NULL = all sites): a staff member is visible when
-- one of their sites, or a site under one of their regions, is the caller's (command users,
-- who have no sites, only to command).

-- name: get_staff_by_username^
SELECT s.id, s.username, s.display_name, s.phone_enc, s.role, s.password_hash, s.active, s.version,
       s.created_at, s.updated_at,
       coalesce((SELECT array_agg(ss.site_id ORDER BY ss.site_id) FROM staff_sites ss WHERE ss.staff_id = s.id), '{}') AS site_ids,
       coalesce((SELECT array_agg(sr.region_id ORDER BY sr.region_id) FROM staff_regions sr WHERE sr.staff_id = s.id), '{}') AS region_ids
FROM staff s
WHERE s.username = :username;

-- name: get_staff_for_token^
SELECT s.id, s.username, s.display_name, s.role, s.active,
       coalesce((SELECT array_agg(ss.site_id ORDER BY ss.site_id) FROM staff_sites ss WHERE ss.staff_id = s.id), '{}') AS site_ids,
       coalesce((SELECT array_agg(sr.region_id ORDER BY sr.region_id) FROM staff_regions sr WHERE sr.staff_id = s.id), '{}') AS region_ids
FROM staff s
WHERE s.id = :id;

-- name: list_staff
SELECT s.id, s.username, s.display_name, s.phone_enc, s.role, s.active, s.version, s.created_at, s.updated_at,
       coalesce((SELECT array_agg(ss.site_id ORDER BY ss.site_id) FROM staff_sites ss WHERE ss.staff_id = s.id), '{}') AS site_ids,
       coalesce((SELECT array_agg(sr.region_id ORDER BY sr.region_id) FROM staff_regions sr WHERE sr.staff_id = s.id), '{}') AS region_ids
FROM staff s
WHERE (:site_ids::uuid[] IS NULL
       OR EXISTS (SELECT 1 FROM staff_sites v WHERE v.staff_id = s.id AND v.site_id = ANY(:site_ids::uuid[]))
       OR EXISTS (SELECT 1 FROM staff_regions sr JOIN regions g ON g.path && ARRAY[sr.region_id]
                  JOIN region_sites rs ON rs.region_id = g.id
                  WHERE sr.staff_id = s.id AND rs.site_id = ANY(:site_ids::uuid[])))
  AND (:site_id::uuid IS NULL OR EXISTS (SELECT 1 FROM staff_sites f WHERE f.staff_id = s.id AND f.site_id = :site_id::uuid))
  AND (:after_username::text IS NULL OR s.username > :after_username::text)
ORDER BY s.username
LIMIT :limit;

-- name: get_staff_by_ids
SELECT s.id, s.username, s.display_name, s.phone_enc, s.role, s.active, s.version, s.created_at, s.updated_at,
       coalesce((SELECT array_agg(ss.site_id ORDER BY ss.site_id) FROM staff_sites ss WHERE ss.staff_id = s.id), '{}') AS site_ids,
       coalesce((SELECT array_agg(sr.region_id ORDER BY sr.region_id) FROM staff_regions sr WHERE sr.staff_id = s.id), '{}') AS region_ids
FROM staff s
WHERE s.id = ANY(:ids::uuid[])
  AND (:site_ids::uuid[] IS NULL
       OR EXISTS (SELECT 1 FROM staff_sites v WHERE v.staff_id = s.id AND v.site_id = ANY(:site_ids::uuid[]))
       OR EXISTS (SELECT 1 FROM staff_regions sr JOIN regions g ON g.path && ARRAY[sr.region_id]
                  JOIN region_sites rs ON rs.region_id = g.id
                  WHERE sr.staff_id = s.id AND rs.site_id = ANY(:site_ids::uuid[])));

-- name: find_staff_by_phone_index
SELECT s.id
FROM staff s
WHERE s.phone_index = :phone_index
  AND (:site_ids::uuid[] IS NULL
       OR EXISTS (SELECT 1 FROM staff_sites v WHERE v.staff_id = s.id AND v.site_id = ANY(:site_ids::uuid[]))
       OR EXISTS (SELECT 1 FROM staff_regions sr JOIN regions g ON g.path && ARRAY[sr.region_id]
                  JOIN region_sites rs ON rs.region_id = g.id
                  WHERE sr.staff_id = s.id AND rs.site_id = ANY(:site_ids::uuid[])));

-- name: lock_staff^
SELECT id, version FROM staff WHERE id = :id FOR UPDATE;

-- name: insert_staff^
INSERT INTO staff (id, username, display_name, phone_enc, phone_index, role, password_hash)
VALUES (:id, :username, :display_name, :phone_enc, :phone_index, :role, :password_hash)
RETURNING id;

-- name: update_staff^
-- Optimistic concurrency: only the version the caller read is updated.
-- :set_phone distinguishes "clear the phone" (true with NULLs) from "leave it".
UPDATE staff SET
    display_name = coalesce(:display_name, display_name),
    role = coalesce(:role, role),
    active = coalesce(:active, active),
    password_hash = coalesce(:password_hash, password_hash),
    phone_enc = CASE WHEN :set_phone::boolean THEN :phone_enc ELSE phone_enc END,
    phone_index = CASE WHEN :set_phone::boolean THEN :phone_index ELSE phone_index END,
    version = version + 1,
    updated_at = now()
WHERE id = :id AND version = :version
RETURNING id;

-- name: set_staff_sites$
WITH gone AS (
    DELETE FROM staff_sites WHERE staff_id = :staff_id AND NOT (site_id = ANY(:site_ids::uuid[]))
    RETURNING site_id
), added AS (
    INSERT INTO staff_sites (staff_id, site_id)
    SELECT :staff_id, unnest(:site_ids::uuid[])
    ON CONFLICT DO NOTHING
    RETURNING site_id
)
SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM added);

-- name: set_staff_regions$
-- The region subtrees an account is scoped to (service/regions); its sites are expanded at token issue.
WITH gone AS (
    DELETE FROM staff_regions WHERE staff_id = :staff_id AND NOT (region_id = ANY(:region_ids::uuid[]))
    RETURNING region_id
), added AS (
    INSERT INTO staff_regions (staff_id, region_id)
    SELECT :staff_id, unnest(:region_ids::uuid[])
    ON CONFLICT DO NOTHING
    RETURNING region_id
)
SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM added);

-- name: insert_refresh_token^
INSERT INTO refresh_tokens (family_id, staff_id, token_hash, expires_at)
VALUES (:family_id, :staff_id, :token_hash, now() + make_interval(days => :days))
RETURNING id, family_id;

-- name: lock_refresh_token^
SELECT id, family_id, staff_id, expires_at <= now() AS expired, rotated_at IS NOT NULL AS rotated,
       revoked_at IS NOT NULL AS revoked
FROM refresh_tokens
WHERE token_hash = :token_hash
FOR UPDATE;

-- name: mark_refresh_token_rotated^
UPDATE refresh_tokens SET rotated_at = now() WHERE id = :id AND rotated_at IS NULL AND revoked_at IS NULL
RETURNING id;

-- name: revoke_refresh_family$
WITH revoked AS (
    UPDATE refresh_tokens SET revoked_at = now()
    WHERE family_id = :family_id AND revoked_at IS NULL
    RETURNING id
)
SELECT count(*) FROM revoked;

-- name: revoke_staff_refresh_tokens$
WITH revoked AS (
    UPDATE refresh_tokens SET revoked_at = now()
    WHERE staff_id = :staff_id AND revoked_at IS NULL
    RETURNING id
)
SELECT count(*) FROM revoked;

-- name: get_client_by_key_hash^
SELECT c.id, c.name, c.role, c.facility_id, c.all_sites,
       coalesce((SELECT array_agg(cs.site_id ORDER BY cs.site_id) FROM api_client_sites cs WHERE cs.client_id = c.id), '{}') AS site_ids
FROM api_clients c
WHERE c.key_hash = :key_hash AND c.revoked_at IS NULL;

-- name: insert_client^
INSERT INTO api_clients (id, name, role, key_hash, key_prefix, all_sites, facility_id, created_by)
VALUES (:id, :name, :role, :key_hash, :key_prefix, :all_sites, :facility_id, :created_by)
RETURNING id;

-- name: insert_client_sites$
WITH added AS (
    INSERT INTO api_client_sites (client_id, site_id)
    SELECT :client_id, unnest(:site_ids::uuid[])
    RETURNING site_id
)
SELECT count(*) FROM added;

-- name: list_clients
-- A client is visible to a site-scoped caller when all its sites are the caller's.
SELECT c.id, c.name, c.role, c.key_prefix, c.all_sites, c.facility_id, c.created_by, c.created_at, c.revoked_at,
       coalesce((SELECT array_agg(cs.site_id ORDER BY cs.site_id) FROM api_client_sites cs WHERE cs.client_id = c.id), '{}') AS site_ids
FROM api_clients c
WHERE (:site_ids::uuid[] IS NULL
       OR (NOT c.all_sites
           AND EXISTS (SELECT 1 FROM api_client_sites v WHERE v.client_id = c.id AND v.site_id = ANY(:site_ids::uuid[]))
           AND NOT EXISTS (SELECT 1 FROM api_client_sites o WHERE o.client_id = c.id AND NOT (o.site_id = ANY(:site_ids::uuid[])))))
  AND (:ids::uuid[] IS NULL OR c.id = ANY(:ids::uuid[]))
  AND (:after_id::uuid IS NULL OR c.id > :after_id::uuid)
ORDER BY c.id
LIMIT :limit;

-- name: revoke_client^
UPDATE api_clients SET revoked_at = coalesce(revoked_at, now())
WHERE id = :id
RETURNING id, key_hash;

-- name: list_audit
SELECT id, at, actor, actor_role, action, site_id, subject_id, fields, purpose, request_id
FROM audit_log
WHERE (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (:site_id::uuid IS NULL OR site_id = :site_id::uuid)
  AND (:subject_id::uuid IS NULL OR subject_id = :subject_id::uuid)
  AND (:actor::text IS NULL OR actor = :actor::text)
  AND (:since::timestamptz IS NULL OR at >= :since::timestamptz)
  AND (:until::timestamptz IS NULL OR at < :until::timestamptz)
  AND (:before_id::bigint IS NULL OR id < :before_id::bigint)
ORDER BY id DESC
LIMIT :limit;

-- name: purge_refresh_tokens!
-- Retention: one batch of tokens that expired more than :days days ago (an expired token is
-- refused anyway, so its family's reuse detection no longer needs it). Rows a login is
-- rotating right now are skipped, not waited for.
DELETE FROM refresh_tokens WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM refresh_tokens
    WHERE expires_at < now() - make_interval(days => :days)
    LIMIT :batch FOR UPDATE SKIP LOCKED));
