-- Transfers and destination facilities. Every transfer read takes :site_ids (NULL = all sites).

-- name: list_facilities
SELECT id, code, name, kind, region_path, contact, capacity_note, active, requires_acceptance, version, created_at, updated_at
FROM facilities
WHERE (:only_id::uuid IS NULL OR id = :only_id::uuid)
  AND (:region::text IS NULL OR region_path = :region::text OR region_path LIKE :region::text || '/%')
  AND (:active::boolean IS NULL OR active = :active::boolean)
  AND (:after_code::text IS NULL OR code > :after_code::text)
ORDER BY code
LIMIT :limit;

-- name: get_facilities
SELECT id, code, name, kind, region_path, contact, capacity_note, active, requires_acceptance, version, created_at, updated_at
FROM facilities
WHERE id = ANY(:ids::uuid[]);

-- name: insert_facility^
INSERT INTO facilities (id, code, name, kind, region_path, contact, capacity_note, requires_acceptance)
VALUES (coalesce(:id::uuid, gen_random_uuid()), :code, :name, :kind, :region_path, :contact, :capacity_note, :requires_acceptance)
RETURNING id, code, name, kind, region_path, contact, capacity_note, active, requires_acceptance, version, created_at, updated_at;

-- name: update_facility^
-- Optimistic concurrency: only the version the caller read is updated.
UPDATE facilities SET
    name = coalesce(:name, name),
    kind = coalesce(:kind, kind),
    region_path = coalesce(:region_path, region_path),
    contact = coalesce(:contact, contact),
    capacity_note = coalesce(:capacity_note, capacity_note),
    active = coalesce(:active, active),
    requires_acceptance = coalesce(:requires_acceptance, requires_acceptance),
    version = version + 1,
    updated_at = now()
WHERE id = :id AND version = :version
RETURNING id, code, name, kind, region_path, contact, capacity_note, active, requires_acceptance, version, created_at, updated_at;

-- name: insert_transfer$
-- A replayed client id inserts nothing (NULL back); the caller then reads the stored one.
INSERT INTO transfers (id, site_id, stay_id, resident_id, room_id, reason, reason_note, alert_id, sample_id,
                       urgency, destination_id, requested_by)
VALUES (:id, :site_id, :stay_id, :resident_id, :room_id, :reason, :reason_note, :alert_id, :sample_id,
        :urgency, :destination_id, :requested_by)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get_transfers
SELECT id, site_id, stay_id, resident_id, room_id, reason, infectious, reason_note, alert_id, sample_id, urgency,
       destination_id, state, version, requested_by, requested_at, approved_at, dispatched_at, departed_at, arrived_at,
       closed_at, vehicle_plate, vehicle_kind, driver, escort, handover_note, consequences_at, updated_at,
       request_to_dispatch_minutes, request_to_arrival_minutes,
       destination_approved_at, outcome, outcome_at, return_site_id, return_stay_id
FROM transfer_views
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: lock_transfer^
-- The row lock orders concurrent movers; the loser then sees the winner's version.
-- :facility_id limits a hospital client to transfers heading to it.
SELECT id, site_id, stay_id, resident_id, room_id, reason, infectious, reason_note, alert_id, sample_id, urgency,
       destination_id, state, version, requested_by, requested_at, approved_at, dispatched_at, departed_at, arrived_at,
       closed_at, vehicle_plate, vehicle_kind, driver, escort, handover_note, consequences_at, updated_at,
       request_to_dispatch_minutes, request_to_arrival_minutes,
       destination_approved_at, outcome, outcome_at, return_site_id, return_stay_id
FROM transfer_views
WHERE id = :id
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (:facility_id::uuid IS NULL OR destination_id = :facility_id::uuid)
FOR UPDATE;

-- name: move_transfer$
-- One edge of the state graph (the trigger refuses any other); first-reached times are kept.
UPDATE transfers SET
    state = :to_state,
    version = version + 1,
    updated_at = now(),
    approved_at = CASE WHEN :to_state = 'approved' THEN coalesce(approved_at, now()) ELSE approved_at END,
    -- The latest acceptance: a decline or redirect clears it, the next destination's sets it again.
    destination_approved_at = CASE WHEN :to_state = 'destination_approved' THEN now()
                                   WHEN :to_state = 'approved' THEN NULL ELSE destination_approved_at END,
    dispatched_at = CASE WHEN :to_state = 'dispatched' THEN coalesce(dispatched_at, now()) ELSE dispatched_at END,
    departed_at = CASE WHEN :to_state = 'departed' THEN coalesce(departed_at, now()) ELSE departed_at END,
    arrived_at = CASE WHEN :to_state = 'arrived' THEN now() ELSE arrived_at END,
    closed_at = CASE WHEN :to_state IN ('rejected', 'cancelled') THEN now() ELSE closed_at END,
    consequences_at = CASE WHEN :to_state = 'departed' THEN coalesce(consequences_at, now()) ELSE consequences_at END,
    destination_id = CASE WHEN :set_destination::boolean THEN :destination_id::uuid ELSE destination_id END,
    vehicle_plate = coalesce(:vehicle_plate, vehicle_plate),
    vehicle_kind = coalesce(:vehicle_kind, vehicle_kind),
    driver = coalesce(:driver, driver),
    escort = coalesce(:escort, escort),
    handover_note = coalesce(:handover_note, handover_note)
WHERE id = :id AND version = :version
RETURNING id;

-- name: report_outcome$
-- The outcome after arrival (the trigger refuses a final outcome replaced, or any before arrival).
UPDATE transfers SET
    outcome = :outcome,
    outcome_at = now(),
    return_site_id = :return_site_id,
    return_stay_id = :return_stay_id,
    version = version + 1,
    updated_at = now()
WHERE id = :id AND version = :version AND state = 'arrived'
RETURNING id;

-- name: insert_transition!
INSERT INTO transfer_transitions (transfer_id, site_id, from_state, to_state, action, actor, note, facility_id)
VALUES (:transfer_id, :site_id, :from_state, :to_state, :action, :actor, :note, :facility_id)
RETURNING id;

-- name: transitions_of
SELECT x.id, x.transfer_id, x.from_state, x.to_state, x.action, x.actor, x.note, x.facility_id, x.at
FROM transfer_transitions x
WHERE x.transfer_id = ANY(:transfer_ids::uuid[])
  AND (:site_ids::uuid[] IS NULL OR x.site_id = ANY(:site_ids::uuid[]))
ORDER BY x.transfer_id, x.id;

-- name: list_site_transfers
-- Newest request first; :states NULL = every state.
SELECT id, site_id, stay_id, resident_id, room_id, reason, infectious, reason_note, alert_id, sample_id, urgency,
       destination_id, state, version, requested_by, requested_at, approved_at, dispatched_at, departed_at, arrived_at,
       closed_at, vehicle_plate, vehicle_kind, driver, escort, handover_note, consequences_at, updated_at,
       request_to_dispatch_minutes, request_to_arrival_minutes,
       destination_approved_at, outcome, outcome_at, return_site_id, return_stay_id
FROM transfer_views
WHERE site_id = :site_id
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (:states::text[] IS NULL OR state = ANY(:states::text[]))
  AND (:after_at::timestamptz IS NULL OR (requested_at, id) < (:after_at::timestamptz, :after_id::uuid))
ORDER BY requested_at DESC, id DESC
LIMIT :limit;

-- name: board
-- A site's open transfers: most urgent first, then the oldest request.
SELECT id, site_id, stay_id, resident_id, room_id, reason, infectious, reason_note, alert_id, sample_id, urgency,
       destination_id, state, version, requested_by, requested_at, approved_at, dispatched_at, departed_at, arrived_at,
       closed_at, vehicle_plate, vehicle_kind, driver, escort, handover_note, consequences_at, updated_at,
       request_to_dispatch_minutes, request_to_arrival_minutes,
       destination_approved_at, outcome, outcome_at, return_site_id, return_stay_id, urgency_rank
FROM transfer_views
WHERE site_id = :site_id
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND state IN ('requested', 'approved', 'destination_approved', 'dispatched', 'departed')
  AND (:after_rank::int IS NULL
       OR (urgency_rank, requested_at, id) > (:after_rank::int, :after_at::timestamptz, :after_id::uuid))
ORDER BY urgency_rank, requested_at, id
LIMIT :limit;

-- name: resident_transfers
SELECT id, site_id, stay_id, resident_id, room_id, reason, infectious, reason_note, alert_id, sample_id, urgency,
       destination_id, state, version, requested_by, requested_at, approved_at, dispatched_at, departed_at, arrived_at,
       closed_at, vehicle_plate, vehicle_kind, driver, escort, handover_note, consequences_at, updated_at,
       request_to_dispatch_minutes, request_to_arrival_minutes,
       destination_approved_at, outcome, outcome_at, return_site_id, return_stay_id
FROM transfer_views
WHERE resident_id = ANY(:resident_ids::uuid[])
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY resident_id, requested_at DESC, id DESC;

-- name: facility_transfers
-- Transfers heading to (or, with :states, also arrived at) one facility, oldest request first.
SELECT id, site_id, stay_id, resident_id, room_id, reason, infectious, reason_note, alert_id, sample_id, urgency,
       destination_id, state, version, requested_by, requested_at, approved_at, dispatched_at, departed_at, arrived_at,
       closed_at, vehicle_plate, vehicle_kind, driver, escort, handover_note, consequences_at, updated_at,
       request_to_dispatch_minutes, request_to_arrival_minutes,
       destination_approved_at, outcome, outcome_at, return_site_id, return_stay_id
FROM transfer_views
WHERE destination_id = :facility_id
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND state = ANY(:states::text[])
  AND (:after_at::timestamptz IS NULL OR (requested_at, id) > (:after_at::timestamptz, :after_id::uuid))
ORDER BY requested_at, id
LIMIT :limit;

-- name: site_times^
-- Median response times of the transfers requested in [since, until).
SELECT count(*)::int AS transfers,
       count(dispatched_at)::int AS dispatched,
       count(arrived_at)::int AS arrived,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY request_to_dispatch_minutes) AS median_request_to_dispatch_minutes,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY request_to_arrival_minutes) AS median_request_to_arrival_minutes
FROM transfer_views
WHERE site_id = :site_id
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND requested_at >= :since AND requested_at < :until;

-- name: demo_backdate$
-- Demo seed only: spread one transfer's times over the past (the seed runs in one transaction,
-- so every now() is the same). Only times already reached are moved; the version advances.
WITH moved AS (
    UPDATE transfers SET
        version = version + 1,
        requested_at = :requested_at,
        approved_at = CASE WHEN approved_at IS NULL THEN NULL ELSE :approved_at::timestamptz END,
        dispatched_at = CASE WHEN dispatched_at IS NULL THEN NULL ELSE :dispatched_at::timestamptz END,
        departed_at = CASE WHEN departed_at IS NULL THEN NULL ELSE :departed_at::timestamptz END,
        arrived_at = CASE WHEN arrived_at IS NULL THEN NULL ELSE :arrived_at::timestamptz END,
        closed_at = CASE WHEN closed_at IS NULL THEN NULL ELSE :closed_at::timestamptz END,
        consequences_at = CASE WHEN consequences_at IS NULL THEN NULL ELSE :departed_at::timestamptz END
    WHERE id = :id
    RETURNING id
), history AS (
    UPDATE transfer_transitions SET at = CASE to_state
        WHEN 'requested' THEN :requested_at::timestamptz
        WHEN 'approved' THEN :approved_at::timestamptz
        WHEN 'dispatched' THEN :dispatched_at::timestamptz
        WHEN 'departed' THEN :departed_at::timestamptz
        WHEN 'arrived' THEN :arrived_at::timestamptz
        ELSE :closed_at::timestamptz END
    WHERE transfer_id = :id
    RETURNING id
)
SELECT count(*) FROM moved;

-- name: compiled_transfer_board$
-- The TransferBoard persisted operation's whole response (service/transfers/compiled.py): board's page
-- (limit + 1 rows say whether there is more) with destination and stay as the loaders see them, ages
-- at :now, cursors as encode_cursor([rank, requested_at, id]) writes. Another or unknown site: empty.
WITH site AS (
    SELECT id FROM sites WHERE id = :site_id AND (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]))
), page AS (
    SELECT t.*, row_number() OVER (ORDER BY t.urgency_rank, t.requested_at, t.id) AS n
    FROM transfer_views t JOIN site ON t.site_id = site.id
    WHERE t.state IN ('requested', 'approved', 'destination_approved', 'dispatched', 'departed')
      AND (:after_rank::int IS NULL OR (t.urgency_rank, t.requested_at, t.id) > (:after_rank::int, :after_at::timestamptz, :after_id::uuid))
    ORDER BY t.urgency_rank, t.requested_at, t.id
    LIMIT :limit::int + 1
)
SELECT json_build_object('data', json_build_object('transferBoard', json_build_object(
    'edges', coalesce(json_agg(json_build_object('node', json_build_object(
        'id', t.id, 'stayId', t.stay_id, 'reason', upper(t.reason), 'infectious', t.infectious, 'urgency', upper(t.urgency),
        'state', upper(t.state), 'version', t.version, 'requestedAt', gql_instant(t.requested_at), 'approvedAt', gql_instant(t.approved_at),
        'dispatchedAt', gql_instant(t.dispatched_at), 'departedAt', gql_instant(t.departed_at), 'vehiclePlate', t.vehicle_plate,
        'ageMinutes', round((extract(epoch FROM :now::timestamptz - t.requested_at) / 60)::numeric, 1)::float8,
        'destination', (SELECT json_build_object('id', f.id, 'name', f.name) FROM facilities f WHERE f.id = t.destination_id),
        'stay', (
            SELECT json_build_object('id', s.id, 'roomNumber', s.room_number, 'floor', s.floor, 'bed', s.bed,
                'resident', (SELECT json_build_object('id', p.id, 'name', gql_masked_name(p.name))
                             FROM residents p
                             WHERE p.id = s.resident_id AND (:site_ids::uuid[] IS NULL OR p.site_id = ANY(:site_ids::uuid[]))))
            FROM stays s
            WHERE s.id = t.stay_id AND (:site_ids::uuid[] IS NULL OR s.site_id = ANY(:site_ids::uuid[])))
    )) ORDER BY t.n) FILTER (WHERE t.n <= :limit::int), '[]'::json),
    'pageInfo', json_build_object(
        'hasNextPage', count(*) > :limit::int,
        'endCursor', CASE WHEN count(*) > :limit::int THEN (array_agg(
            rtrim(translate(replace(encode(convert_to('[' || t.urgency_rank || ',"' || gql_instant(t.requested_at) || '","' || t.id || '"]', 'UTF8'),
                                           'base64'), E'\n', ''), '+/', '-_'), '=')
        ) FILTER (WHERE t.n = :limit::int))[1] END))))::text
FROM page t;
