-- Intake: referrals and the pending-admission queue, risk areas (intake domain).
-- Every read takes :site_ids (NULL = all sites) so that scoping cannot be forgotten.

-- name: lock_risk_area_code!
-- Serialises declarations of one area, so that the overlap check below cannot race.
SELECT pg_advisory_xact_lock(hashtextextended('risk_area:' || :code, 0));

-- name: overlapping_risk_area$
SELECT EXISTS (
    SELECT 1 FROM risk_areas
    WHERE code = :code AND tstzrange(valid_from, valid_to) && tstzrange(:valid_from::timestamptz, :valid_to::timestamptz)
);

-- name: insert_risk_area^
INSERT INTO risk_areas (code, name, level, valid_from, valid_to, created_by)
VALUES (:code, :name, :level, :valid_from, :valid_to, :actor)
RETURNING id, code, name, level, valid_from, valid_to, created_at;

-- name: list_risk_areas
-- Risk areas, one code or all; with :at only those in force then.
SELECT id, code, name, level, valid_from, valid_to, created_at
FROM risk_areas
WHERE (:code::text IS NULL OR code = :code::text)
  AND (:at::timestamptz IS NULL OR (valid_from <= :at::timestamptz AND (valid_to IS NULL OR valid_to > :at::timestamptz)))
ORDER BY code, valid_from
LIMIT 500;

-- name: risk_level_at$
SELECT level FROM risk_areas
WHERE code = :code AND valid_from <= :at AND (valid_to IS NULL OR valid_to > :at)
ORDER BY valid_from DESC LIMIT 1;

-- name: insert_referral^
-- A new referral, unless the person already has an open one (the partial unique index decides,
-- also between two submissions racing): then nothing is inserted and merge_referral runs.
INSERT INTO referrals (id, site_id, name, sex, birth_date, document_type, document_enc, document_index, document_tail,
                       phone_enc, phone_tail, household_key, category, index_case_refs, identified_at, origin_area,
                       risk_area_code, risk_level, regime_code, needs, note, submitted_by)
VALUES (:id, :site_id, :name, :sex, :birth_date, :document_type, :document_enc, :document_index, :document_tail,
        :phone_enc, :phone_tail, :household_key, :category, :index_case_refs, :identified_at, :origin_area,
        :risk_area_code, :risk_level, :regime_code, :needs, :note, :actor)
ON CONFLICT (document_type, document_index) WHERE state IN ('pending', 'assigned') DO NOTHING
RETURNING id;

-- name: merge_referral^
-- A duplicate submission of a person with an open referral: the earliest identification, every
-- index case, the higher risk (with its area and the regime proposed for it), needs and household added.
UPDATE referrals r SET
    identified_at = least(r.identified_at, :identified_at),
    index_case_refs = CASE WHEN :index_case_ref::text IS NULL OR :index_case_ref::text = ANY(r.index_case_refs) THEN r.index_case_refs
                           ELSE (r.index_case_refs || :index_case_ref::text)[greatest(1, cardinality(r.index_case_refs) - 48):] END,
    risk_area_code = CASE WHEN :higher_risk THEN :risk_area_code ELSE r.risk_area_code END,
    risk_level = CASE WHEN :higher_risk THEN :risk_level ELSE r.risk_level END,
    regime_code = CASE WHEN :higher_risk THEN :regime_code ELSE r.regime_code END,
    needs = ARRAY(SELECT DISTINCT n FROM unnest(r.needs || :needs::text[]) AS n ORDER BY n),
    household_key = coalesce(r.household_key, :household_key),
    submissions = r.submissions + 1,
    version = r.version + 1
WHERE r.document_type = :document_type AND r.document_index = :document_index AND r.state IN ('pending', 'assigned')
RETURNING r.id, r.site_id;

-- name: open_referral_of_person^
SELECT id, site_id, category, risk_level FROM referrals
WHERE document_type = :document_type AND document_index = :document_index AND state IN ('pending', 'assigned')
FOR UPDATE;

-- name: referral_site^
-- Unscoped: whether a referral id is taken, and where.
SELECT site_id, document_type, document_index FROM referrals WHERE id = :id;

-- name: insert_submission!
INSERT INTO referral_submissions (referral_id, site_id, submitted_by, index_case_ref, identified_at, risk_area_code)
VALUES (:referral_id, :site_id, :actor, coalesce(:index_case_ref, ''), :identified_at, :risk_area_code);

-- name: get_referrals
SELECT id, site_id, state, name, sex, birth_date, document_type, document_tail, phone_tail, household_key, category,
       index_case_refs, identified_at, origin_area, risk_area_code, risk_level, regime_code, needs, note, submissions,
       submitted_at, assigned_at, closed_at, close_reason, stay_id, arrived_at, version
FROM referrals
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: lock_referral^
SELECT id FROM referrals WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[])) FOR UPDATE;

-- name: referral_secrets^
-- The plain name and birth date and the ciphertexts: admission only (never answered).
SELECT name, birth_date, document_enc, phone_enc FROM referrals WHERE id = :id;

-- name: list_queue
-- The queue of the sites asked for (one site, the sites under a region path, or all the caller's),
-- oldest identification first: who has waited longest is placed first. Keyset on (identified_at, id).
SELECT q.id, q.site_id, q.state, q.name, q.sex, q.birth_date, q.document_type, q.document_tail, q.phone_tail, q.household_key,
       q.category, q.index_case_refs, q.identified_at, q.origin_area, q.risk_area_code, q.risk_level, q.regime_code, q.needs,
       q.note, q.submissions, q.submitted_at, q.assigned_at, q.closed_at, q.close_reason, q.stay_id, q.arrived_at, q.version
FROM referrals q JOIN sites s ON s.id = q.site_id
WHERE (:site_id::uuid IS NULL OR q.site_id = :site_id::uuid)
  AND (:region::text IS NULL OR s.region_path = :region::text OR s.region_path LIKE replace(replace(:region::text, '%', '\%'), '_', '\_') || '/%')
  AND (:site_ids::uuid[] IS NULL OR q.site_id = ANY(:site_ids::uuid[]))
  AND q.state = ANY(:states::text[])
  AND (:after_at::timestamptz IS NULL OR (q.identified_at, q.id) > (:after_at::timestamptz, :after_id::uuid))
ORDER BY q.identified_at, q.id
LIMIT :limit;

-- name: set_state^
UPDATE referrals SET
    state = :state,
    site_id = coalesce(:site_id::uuid, site_id),
    assigned_at = CASE WHEN :state = 'assigned' THEN now() ELSE assigned_at END,
    assigned_by = CASE WHEN :state = 'assigned' THEN :actor ELSE assigned_by END,
    closed_at = CASE WHEN :state IN ('arrived', 'cancelled', 'no_show') THEN now() END,
    closed_by = CASE WHEN :state IN ('arrived', 'cancelled', 'no_show') THEN :actor END,
    close_reason = :reason,
    stay_id = :stay_id::uuid,
    arrived_at = :arrived_at::timestamptz,
    version = version + 1
WHERE id = :id AND version = :version AND state = ANY(:from_states::text[])
RETURNING id;

-- name: isolation_times
-- Identification -> isolation of the people who arrived, per site and local day of arrival.
SELECT q.site_id, (q.arrived_at AT TIME ZONE s.time_zone)::date AS day, count(*)::int AS arrived,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM q.arrived_at - q.identified_at)) / 3600)::numeric, 2)::float8 AS median_hours,
       round((max(extract(epoch FROM q.arrived_at - q.identified_at)) / 3600)::numeric, 2)::float8 AS max_hours
FROM referrals q JOIN sites s ON s.id = q.site_id
WHERE q.state = 'arrived' AND q.site_id = :site_id AND (:site_ids::uuid[] IS NULL OR q.site_id = ANY(:site_ids::uuid[]))
  AND q.arrived_at >= :since AND q.arrived_at < :until
GROUP BY q.site_id, day
ORDER BY day;

-- name: insert_manifest!
INSERT INTO arrival_manifests (id, site_id, vehicle_plate, vehicle_kind, escort, expected_at, hold_until, created_by)
VALUES (:id, :site_id, :vehicle_plate, :vehicle_kind, :escort, :expected_at, :hold_until, :actor);

-- name: insert_members!
INSERT INTO manifest_members (manifest_id, referral_id, site_id, position, reservation_id)
SELECT :manifest_id, x.referral_id, :site_id, x.position, x.reservation_id
FROM unnest(:referral_ids::uuid[], :reservation_ids::uuid[]) WITH ORDINALITY AS x(referral_id, reservation_id, position);

-- name: manifest_site^
-- Unscoped: whether a manifest id is taken, and where.
SELECT site_id FROM arrival_manifests WHERE id = :id;

-- name: get_manifests
SELECT id, site_id, vehicle_plate, vehicle_kind, escort, expected_at, hold_until, state, created_at, closed_at, version
FROM arrival_manifests
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: manifest_members
-- Members with the bed their reservation holds or held (rooms of the manifest's own site).
SELECT m.manifest_id, m.referral_id, m.state, m.reservation_id, m.stay_id,
       b.room_id, r.number AS room_number, b.bed, b.state AS reservation_state
FROM manifest_members m
LEFT JOIN bed_reservations b ON b.id = m.reservation_id
LEFT JOIN rooms r ON r.id = b.room_id
WHERE m.manifest_id = ANY(:ids::uuid[])
ORDER BY m.manifest_id, m.position;

-- name: list_manifests
-- A site's manifests by expected arrival; keyset on (expected_at, id).
SELECT id FROM arrival_manifests
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND state = ANY(:states::text[])
  AND (:after_at::timestamptz IS NULL OR (expected_at, id) > (:after_at::timestamptz, :after_id::uuid))
ORDER BY expected_at, id
LIMIT :limit;

-- name: lock_manifest^
SELECT id FROM arrival_manifests WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[])) FOR UPDATE;

-- name: close_manifest^
UPDATE arrival_manifests SET state = :state, closed_at = now(), closed_by = :actor, version = version + 1
WHERE id = :id AND version = :version AND state = 'announced'
RETURNING id;

-- name: set_member^
UPDATE manifest_members SET state = :state, stay_id = coalesce(:stay_id::uuid, stay_id)
WHERE manifest_id = :manifest_id AND referral_id = :referral_id AND state = 'expected'
RETURNING reservation_id;

-- name: touch_manifest!
UPDATE arrival_manifests SET version = version + 1 WHERE id = :id;

-- name: referrals_on_manifests
-- Which of these referrals ride an announced vehicle already.
SELECT referral_id FROM manifest_members WHERE referral_id = ANY(:ids::uuid[]) AND state = 'expected';

-- name: expected_member^
-- The announced vehicle a referral rides, if any, and the reservation held for it.
SELECT manifest_id, reservation_id FROM manifest_members WHERE referral_id = :referral_id AND state = 'expected';
