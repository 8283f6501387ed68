-- Infection control. Every read takes :site_ids (NULL = all sites, an empty array = none).

-- name: insert_inspection$
INSERT INTO inspections (id, site_id, inspected_at, inspector, zoning_ok, ppe_ok, disinfection_records_ok, waste_ok, note)
VALUES (:id, :site_id, :inspected_at, :actor, :zoning_ok, :ppe_ok, :disinfection_records_ok, :waste_ok, :note)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_inspections
SELECT i.id, i.site_id, i.inspected_at, i.inspector, i.zoning_ok, i.ppe_ok, i.disinfection_records_ok, i.waste_ok, i.note,
       (SELECT count(*)::int FROM inspection_findings f WHERE f.inspection_id = i.id AND f.state = 'open') AS open_findings
FROM inspections i
WHERE i.id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR i.site_id = ANY(:site_ids::uuid[]));

-- name: site_inspections
-- Newest first.
SELECT i.id, i.site_id, i.inspected_at, i.inspector, i.zoning_ok, i.ppe_ok, i.disinfection_records_ok, i.waste_ok, i.note,
       (SELECT count(*)::int FROM inspection_findings f WHERE f.inspection_id = i.id AND f.state = 'open') AS open_findings
FROM inspections i
WHERE i.site_id = :site_id AND (:site_ids::uuid[] IS NULL OR i.site_id = ANY(:site_ids::uuid[]))
  AND (:after_at::timestamptz IS NULL OR (i.inspected_at, i.id) < (:after_at::timestamptz, :after_id::uuid))
ORDER BY i.inspected_at DESC, i.id DESC
LIMIT :limit;

-- name: insert_finding$
INSERT INTO inspection_findings (id, inspection_id, site_id, area, severity, description, corrective_action, due_on)
VALUES (:id, :inspection_id, :site_id, :area, :severity, :description, :corrective_action, :due_on)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_findings
SELECT id, inspection_id, site_id, area, severity, description, corrective_action, due_on, state, resolution, resolved_by,
       resolved_at, version, (state = 'open' AND due_on < :today::date) AS overdue
FROM inspection_findings
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: findings_of
SELECT id, inspection_id, site_id, area, severity, description, corrective_action, due_on, state, resolution, resolved_by,
       resolved_at, version, (state = 'open' AND due_on < :today::date) AS overdue
FROM inspection_findings
WHERE inspection_id = ANY(:inspection_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY inspection_id, due_on, id;

-- name: open_findings
-- The corrective actions still open at a site, the most urgent first.
SELECT id, inspection_id, site_id, area, severity, description, corrective_action, due_on, state, resolution, resolved_by,
       resolved_at, version, (due_on < :today::date) AS overdue
FROM inspection_findings
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[])) AND state = 'open'
ORDER BY due_on, CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, id
LIMIT 500;

-- name: lock_finding^
SELECT id, site_id, state, version, resolution FROM inspection_findings
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: resolve_finding$
UPDATE inspection_findings SET state = 'resolved', resolution = :resolution, resolved_by = :actor, resolved_at = now(),
       version = version + 1
WHERE id = :id AND version = :version AND state = 'open'
RETURNING id;

-- name: insert_env_sample$
INSERT INTO environmental_samples (id, site_id, location, floor, barcode, collected_at, recorded_by)
VALUES (:id, :site_id, :location, :floor, :barcode, :collected_at, :actor)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_env_samples
SELECT id, site_id, location, floor, barcode, collected_at, result, resulted_at, recorded_by
FROM environmental_samples
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: site_env_samples
SELECT id, site_id, location, floor, barcode, collected_at, result, resulted_at, recorded_by
FROM environmental_samples
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND collected_at >= :since AND collected_at < :until
ORDER BY collected_at DESC, id
LIMIT 500;

-- name: lock_env_sample^
SELECT id, site_id, result FROM environmental_samples
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: set_env_result$
UPDATE environmental_samples SET result = :result, resulted_at = now()
WHERE id = :id AND result = 'pending'
RETURNING id;

-- name: insert_waste$
INSERT INTO medical_waste (id, site_id, bags, weight_kg, sealed_by, sealed_at, recorded_by)
VALUES (:id, :site_id, :bags, :weight_kg, :sealed_by, :sealed_at, :actor)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_waste
SELECT id, site_id, bags, weight_kg::float8 AS weight_kg, sealed_by, sealed_at, recorded_by, state, carrier, carrier_receipt,
       handed_over_at, version
FROM medical_waste
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: site_waste
-- The log: batches sealed in [since, until), newest first.
SELECT id, site_id, bags, weight_kg::float8 AS weight_kg, sealed_by, sealed_at, recorded_by, state, carrier, carrier_receipt,
       handed_over_at, version
FROM medical_waste
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND sealed_at >= :since AND sealed_at < :until
ORDER BY sealed_at DESC, id
LIMIT 500;

-- name: lock_waste^
SELECT id, site_id, state, version, carrier, carrier_receipt FROM medical_waste
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: hand_over_waste$
UPDATE medical_waste SET state = 'handed_over', carrier = :carrier, carrier_receipt = :carrier_receipt,
       handed_over_at = :handed_over_at, version = version + 1
WHERE id = :id AND version = :version AND state = 'sealed'
RETURNING id;
