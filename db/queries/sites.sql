-- Sites. Every read takes :site_ids (NULL = all sites) so that scoping cannot be forgotten.

-- name: list_sites
SELECT id, code, name, region_path, kind, status, time_zone, address, contact, version, created_at, updated_at
FROM sites
WHERE (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]))
  AND (:after_code::text IS NULL OR code > :after_code::text)
ORDER BY code
LIMIT :limit;

-- name: get_site^
SELECT id, code, name, region_path, kind, status, time_zone, address, contact, version, created_at, updated_at
FROM sites
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]));

-- name: get_sites_by_ids
SELECT id, code, name, region_path, kind, status, time_zone, address, contact, version, created_at, updated_at
FROM sites
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]));

-- name: insert_site^
INSERT INTO sites (code, name, region_path, kind, status, time_zone, address, contact)
VALUES (:code, :name, :region_path, :kind, :status, :time_zone, :address, :contact)
RETURNING id, code, name, region_path, kind, status, time_zone, address, contact, version, created_at, updated_at;

-- name: update_site^
-- Optimistic concurrency: only the version the caller read is updated.
UPDATE sites SET
    name = coalesce(:name, name),
    region_path = coalesce(:region_path, region_path),
    kind = coalesce(:kind, kind),
    status = coalesce(:status, status),
    time_zone = coalesce(:time_zone, time_zone),
    address = coalesce(:address, address),
    contact = coalesce(:contact, contact),
    version = version + 1,
    updated_at = now()
WHERE id = :id AND version = :version AND (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]))
RETURNING id, code, name, region_path, kind, status, time_zone, address, contact, version, created_at, updated_at;
