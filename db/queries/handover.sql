-- Hand-over on release and the release certificate. Reads take :site_ids (NULL = all sites, an
-- empty array = none); the public verification reads by code hash and answers no personal data.

-- name: insert_handover!
INSERT INTO handovers (stay_id, site_id, resident_id, regime_id, released_at, released_on, region_id,
                       contact_name_enc, contact_name_mask, contact_phone_enc, contact_phone_tail, note,
                       phases, home_ends_on, certificate_hash, certificate_enc, created_by)
VALUES (:stay_id, :site_id, :resident_id, :regime_id, :released_at, :released_on, :region_id,
        :contact_name_enc, :contact_name_mask, :contact_phone_enc, :contact_phone_tail, :note,
        :phases, :home_ends_on, :certificate_hash, :certificate_enc, :actor);

-- name: get_handovers
SELECT h.stay_id, h.site_id, h.resident_id, h.released_at, h.released_on, h.region_id,
       r.code AS region_code, r.name AS region_name, h.contact_name_mask, h.contact_phone_tail, h.note,
       h.phases, h.home_ends_on, h.revoked_at, h.revoked_reason, h.version, h.created_by
FROM handovers h LEFT JOIN regions r ON r.id = h.region_id
WHERE h.stay_id = ANY(:stay_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR h.site_id = ANY(:site_ids::uuid[]));

-- name: get_secrets^
-- The encrypted fields of one hand-over (unmasking, printing the certificate), caller's sites only.
SELECT stay_id, site_id, contact_name_enc, contact_phone_enc, certificate_enc
FROM handovers
WHERE stay_id = :stay_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: revoke^
-- Revoke a certificate once; NULL back when the hand-over is not the caller's or already revoked.
UPDATE handovers SET revoked_at = now(), revoked_by = :actor, revoked_reason = :reason, version = version + 1
WHERE stay_id = :stay_id AND revoked_at IS NULL AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
RETURNING stay_id;

-- name: verify^
-- What the public verification answers: no resident, contact or stay id.
SELECT s.name AS site_name, s.code AS site_code, h.released_on, h.released_at, h.phases, h.home_ends_on, h.revoked_at
FROM handovers h JOIN sites s ON s.id = h.site_id
WHERE h.certificate_hash = :certificate_hash;
