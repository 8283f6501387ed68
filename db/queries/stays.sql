-- Regimes, residents and stays (stays domain).
-- Every read takes :site_ids (NULL = all sites) so that scoping cannot be forgotten.

-- Regimes are versioned (migration 0036): "in force at :at" (NULL: now) is the version with the latest
-- effective_from not after it, or the first version for an earlier instant.

-- name: list_regimes
-- Every regime code in its version in force at :at.
SELECT DISTINCT ON (code) id, code, name, category, centralized_days, home_isolation_days, home_monitoring_days, test_days, phases, checkins_per_day, effective_from, version, updated_at
FROM regimes ORDER BY code, effective_from <= coalesce(:at::timestamptz, now()) DESC, CASE WHEN effective_from <= coalesce(:at::timestamptz, now()) THEN effective_from END DESC, effective_from;

-- name: regime_versions
SELECT id, code, name, category, centralized_days, home_isolation_days, home_monitoring_days, test_days, phases, checkins_per_day, effective_from, version, updated_at FROM regimes WHERE code = :code ORDER BY version;

-- name: get_regime_by_code^
SELECT id, code, name, category, centralized_days, home_isolation_days, home_monitoring_days, test_days, phases, checkins_per_day, effective_from, version, updated_at FROM regimes WHERE code = :code ORDER BY effective_from <= coalesce(:at::timestamptz, now()) DESC, CASE WHEN effective_from <= coalesce(:at::timestamptz, now()) THEN effective_from END DESC, effective_from LIMIT 1;

-- name: latest_regime_version^
-- The newest version of a code (by number), whatever its effective_from: the one a change builds on.
SELECT id, code, name, category, centralized_days, home_isolation_days, home_monitoring_days, test_days, phases, checkins_per_day, effective_from, version, updated_at FROM regimes WHERE code = :code ORDER BY version DESC LIMIT 1;

-- name: get_regime_for_category^
SELECT id, code, name, category, centralized_days, home_isolation_days, home_monitoring_days, test_days, phases, checkins_per_day, effective_from, version, updated_at FROM regimes WHERE category = :category ORDER BY effective_from <= coalesce(:at::timestamptz, now()) DESC, CASE WHEN effective_from <= coalesce(:at::timestamptz, now()) THEN effective_from END DESC, effective_from LIMIT 1;

-- name: category_codes
SELECT DISTINCT code FROM regimes WHERE category = :category;

-- name: get_regimes_by_ids
SELECT id, code, name, category, centralized_days, home_isolation_days, home_monitoring_days, test_days, phases, checkins_per_day, effective_from, version, updated_at FROM regimes WHERE id = ANY(:ids::uuid[]);

-- name: lock_regime_code!
-- Serialises creating and changing regimes (versions are numbered, a category has one code).
SELECT pg_advisory_xact_lock(hashtextextended('regimes', 0));

-- name: insert_regime^
INSERT INTO regimes (code, name, category, centralized_days, home_isolation_days, home_monitoring_days, test_days, phases,
                     checkins_per_day, effective_from, version, created_by)
VALUES (:code, :name, :category, :centralized_days, :home_isolation_days, :home_monitoring_days, :test_days, :phases,
        :checkins_per_day, :effective_from, :version, :actor)
RETURNING id, code, name, category, centralized_days, home_isolation_days, home_monitoring_days, test_days, phases, checkins_per_day, effective_from, version, updated_at;

-- name: replan_regime_stays
-- Move the open stays of every other version of a regime onto version :regime_id: each gets its planned
-- release again, the period counted from its own start date in its site's time zone.
UPDATE stays SET
    regime_id = :regime_id,
    planned_release_at = ((period_start + :centralized_days::int)::timestamp AT TIME ZONE time_zone),
    version = version + 1
WHERE status = 'active' AND regime_id <> :regime_id
  AND regime_id IN (SELECT id FROM regimes WHERE code = :code)
RETURNING id, site_id;

-- name: list_regime_rules
SELECT category, risk_level, regime_code, updated_at, updated_by FROM regime_rules ORDER BY category, risk_level NULLS FIRST;

-- name: regime_by_rule^
-- The regime a rule names for (category, risk level), in its version in force at :at; a null level
-- matches the rule without a level.
SELECT g.id, g.code, g.name, g.category, g.centralized_days, g.home_isolation_days, g.home_monitoring_days, g.test_days, g.phases, g.checkins_per_day, g.effective_from, g.version, g.updated_at
FROM regime_rules r JOIN regimes g ON g.code = r.regime_code
WHERE r.category = :category AND r.risk_level IS NOT DISTINCT FROM :risk_level::text
ORDER BY g.effective_from <= coalesce(:at::timestamptz, now()) DESC, CASE WHEN g.effective_from <= coalesce(:at::timestamptz, now()) THEN g.effective_from END DESC, g.effective_from
LIMIT 1;

-- name: set_regime_rule!
INSERT INTO regime_rules (category, risk_level, regime_code, updated_by) VALUES (:category, :risk_level, :regime_code, :actor)
ON CONFLICT ON CONSTRAINT regime_rules_key DO UPDATE SET regime_code = EXCLUDED.regime_code, updated_at = now(), updated_by = EXCLUDED.updated_by;

-- name: insert_resident^
INSERT INTO residents (id, site_id, name, sex, birth_date, document_type, document_enc, document_index, document_tail,
                       phone_enc, phone_tail, household_key, created_by)
VALUES (:id, :site_id, :name, :sex, :birth_date, :document_type, :document_enc, :document_index, :document_tail,
        :phone_enc, :phone_tail, :household_key, :actor)
RETURNING id, site_id, name, sex, birth_date, document_type, document_tail, phone_tail, household_key, created_at;

-- name: get_residents
SELECT id, site_id, name, sex, birth_date, document_type, document_tail, phone_tail, household_key, created_at
FROM residents
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: find_resident_by_index
-- Blind-index lookup, deliberately unscoped: admission must find a person known at another site.
SELECT id, site_id, name, sex, birth_date, document_type, document_tail, phone_tail, household_key, created_at
FROM residents
WHERE document_index = :document_index AND (:document_type::text IS NULL OR document_type = :document_type::text)
FOR UPDATE;

-- name: has_active_stay$
SELECT EXISTS (SELECT 1 FROM residents r JOIN stays s ON s.resident_id = r.id AND s.status = 'active'
               WHERE r.document_type = :document_type AND r.document_index = :document_index);

-- name: search_residents_by_index
SELECT id, site_id, name, sex, birth_date, document_type, document_tail, phone_tail, household_key, created_at
FROM residents
WHERE document_index = :document_index AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: get_resident_secrets^
SELECT id, site_id, name, birth_date, document_type, document_enc, phone_enc
FROM residents
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: set_resident_site^
UPDATE residents SET site_id = :site_id WHERE id = :id RETURNING id;

-- name: insert_stay^
INSERT INTO stays (id, resident_id, site_id, room_id, room_number, floor, bed, category, origin_area, risk_level, arrival_batch,
                   regime_id, time_zone, admitted_at, day_one, period_start, planned_release_at, moved_from, created_by)
VALUES (:id, :resident_id, :site_id, :room_id, :room_number, :floor, :bed, :category, :origin_area, :risk_level, :arrival_batch,
        :regime_id, :time_zone, :admitted_at, :day_one, :period_start, :planned_release_at, :moved_from, :actor)
RETURNING id;

-- name: get_stays
SELECT s.id, s.resident_id, s.site_id, s.room_id, s.room_number, s.floor, s.bed, s.category, s.origin_area, s.risk_level,
       s.arrival_batch, s.regime_id, g.code AS regime_code, s.time_zone, s.admitted_at, s.day_one, s.period_start,
       s.planned_release_at, s.status, s.ended_at, s.outcome, s.moved_to, s.moved_from, s.version, s.created_at
FROM stays s JOIN regimes g ON g.id = s.regime_id
WHERE s.id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR s.site_id = ANY(:site_ids::uuid[]));

-- name: lock_stay^
SELECT id FROM stays
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: close_stay^
UPDATE stays SET status = 'closed', outcome = :outcome, ended_at = now(), moved_to = :moved_to, version = version + 1
WHERE id = :id AND status = 'active'
RETURNING id;

-- name: set_period^
UPDATE stays SET period_start = :period_start, planned_release_at = :planned_release_at, version = version + 1
WHERE id = :id
RETURNING id;

-- name: taken_beds
-- Beds of a room held by an active stay or by a reservation in force (but :except_reservation, being consumed).
SELECT bed FROM stays WHERE room_id = :room_id AND status = 'active'
UNION
SELECT bed FROM bed_reservations
WHERE room_id = :room_id AND state = 'held' AND expires_at > now() AND id IS DISTINCT FROM :except_reservation::uuid;

-- name: reserved_beds
-- Reservations in force in these rooms (room board, allocation).
SELECT id, site_id, room_id, bed, holder_id, subject_id, household_key, category, arrival_batch, expires_at
FROM bed_reservations
WHERE room_id = ANY(:room_ids::uuid[]) AND state = 'held' AND expires_at > now()
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY room_id, bed;

-- name: expire_reservations!
-- Reservations past their time let go of their beds (a reservation path runs this under the room locks).
UPDATE bed_reservations SET state = 'expired', ended_at = now()
WHERE site_id = :site_id AND state = 'held' AND expires_at <= now();

-- name: insert_reservations
INSERT INTO bed_reservations (site_id, room_id, bed, holder_id, subject_id, household_key, category, arrival_batch, expires_at)
SELECT :site_id, x.room_id, x.bed, :holder_id, x.subject_id, x.household_key, x.category, x.arrival_batch, :expires_at
FROM unnest(:room_ids::uuid[], :beds::int[], :subject_ids::uuid[], :household_keys::text[], :categories::text[], :batches::text[])
     AS x(room_id, bed, subject_id, household_key, category, arrival_batch)
RETURNING id;

-- name: get_reservations
SELECT b.id, b.site_id, b.room_id, r.number AS room_number, r.floor, b.bed, b.holder_id, b.subject_id, b.state, b.expires_at, b.stay_id
FROM bed_reservations b JOIN rooms r ON r.id = b.room_id
WHERE b.id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR b.site_id = ANY(:site_ids::uuid[]));

-- name: lock_reservation^
SELECT id, room_id, bed, state, expires_at FROM bed_reservations WHERE id = :id FOR UPDATE;

-- name: consume_reservation!
UPDATE bed_reservations SET state = 'consumed', stay_id = :stay_id, ended_at = now() WHERE id = :id AND state = 'held';

-- name: release_reservations!
UPDATE bed_reservations SET state = 'released', ended_at = now() WHERE id = ANY(:ids::uuid[]) AND state = 'held';

-- name: room_households
-- Household keys (null for people alone) of the active stays in these rooms, and of the reservations
-- in force there (a reserved room is spoken for by the household it waits for).
SELECT s.room_id, r.household_key
FROM stays s JOIN residents r ON r.id = s.resident_id
WHERE s.room_id = ANY(:room_ids::uuid[]) AND s.status = 'active'
UNION ALL
SELECT room_id, household_key FROM bed_reservations
WHERE room_id = ANY(:room_ids::uuid[]) AND state = 'held' AND expires_at > now();

-- name: floor_mix
-- Who lives on each floor of a site now, or is expected there (reservations in force): the allocation
-- keeps categories and batches apart.
SELECT floor, category, arrival_batch, count(*)::int AS n
FROM (SELECT floor, category, arrival_batch FROM stays WHERE site_id = :site_id AND status = 'active'
      UNION ALL
      SELECT r.floor, b.category, b.arrival_batch FROM bed_reservations b JOIN rooms r ON r.id = b.room_id
      WHERE b.site_id = :site_id AND b.state = 'held' AND b.expires_at > now()) AS x
GROUP BY floor, category, arrival_batch;

-- name: active_stay_ids_in_rooms
-- The board: active stays of many rooms in one statement.
SELECT id, room_id FROM stays
WHERE room_id = ANY(:room_ids::uuid[]) AND status = 'active' AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY room_id, bed;

-- name: board_rows
-- The board: each active stay of these rooms with its resident and regime, in one statement.
SELECT s.id, s.resident_id, s.site_id, s.room_id, s.room_number, s.floor, s.bed, s.category, s.origin_area, s.risk_level,
       s.arrival_batch, s.regime_id, g.code AS regime_code, s.time_zone, s.admitted_at, s.day_one, s.period_start,
       s.planned_release_at, s.status, s.ended_at, s.outcome, s.moved_to, s.moved_from, s.version, s.created_at,
       r.site_id AS r_site_id, r.name AS r_name, r.sex AS r_sex, r.birth_date AS r_birth_date, r.document_type AS r_document_type,
       r.document_tail AS r_document_tail, r.phone_tail AS r_phone_tail, r.household_key AS r_household_key, r.created_at AS r_created_at
FROM stays s
JOIN regimes g ON g.id = s.regime_id
JOIN residents r ON r.id = s.resident_id
WHERE s.room_id = ANY(:room_ids::uuid[]) AND s.status = 'active' AND (:site_ids::uuid[] IS NULL OR s.site_id = ANY(:site_ids::uuid[]))
ORDER BY s.room_id, s.bed;

-- name: list_stays
-- A site's stays, newest admission first, keyset-paginated.
SELECT s.id, s.resident_id, s.site_id, s.room_id, s.room_number, s.floor, s.bed, s.category, s.origin_area, s.risk_level,
       s.arrival_batch, s.regime_id, g.code AS regime_code, s.time_zone, s.admitted_at, s.day_one, s.period_start,
       s.planned_release_at, s.status, s.ended_at, s.outcome, s.moved_to, s.moved_from, s.version, s.created_at
FROM stays s JOIN regimes g ON g.id = s.regime_id
WHERE s.site_id = :site_id AND (:site_ids::uuid[] IS NULL OR s.site_id = ANY(:site_ids::uuid[]))
  AND (:status::text IS NULL OR s.status = :status::text)
  AND (:arrival_batch::text IS NULL OR s.arrival_batch = :arrival_batch::text)
  AND (:after_at::timestamptz IS NULL OR (s.admitted_at, s.id) < (:after_at::timestamptz, :after_id::uuid))
ORDER BY s.admitted_at DESC, s.id DESC
LIMIT :limit;

-- name: roommates
SELECT id FROM stays
WHERE room_id = :room_id AND status = 'active' AND id <> :stay_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY bed;

-- name: household
SELECT s.id FROM stays s JOIN residents r ON r.id = s.resident_id
WHERE r.household_key = :household_key AND s.status = 'active' AND s.id <> :stay_id
  AND (:site_ids::uuid[] IS NULL OR s.site_id = ANY(:site_ids::uuid[]))
ORDER BY s.room_number, s.bed;

-- name: floor_neighbours
SELECT id FROM stays
WHERE site_id = :site_id AND floor = :floor AND room_id <> :room_id AND status = 'active'
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY room_number, bed;

-- name: occupied_beds
SELECT site_id, count(*)::int AS n FROM stays
WHERE status = 'active' AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
GROUP BY site_id;

-- name: releases_due
-- Active stays whose planned release falls on the site's local today / tomorrow.
SELECT site_id,
       count(*) FILTER (WHERE (planned_release_at AT TIME ZONE time_zone)::date <= (now() AT TIME ZONE time_zone)::date)::int AS today,
       count(*) FILTER (WHERE (planned_release_at AT TIME ZONE time_zone)::date = (now() AT TIME ZONE time_zone)::date + 1)::int AS tomorrow
FROM stays
WHERE status = 'active' AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND planned_release_at < now() + interval '3 days'
GROUP BY site_id;

-- name: link_move^
UPDATE stays SET moved_to = :moved_to WHERE id = :id RETURNING id;

-- name: bulk_insert_residents!
-- Seeding many residents at once (demo, scale data); each row's values already encrypted.
INSERT INTO residents (id, site_id, name, sex, birth_date, document_type, document_enc, document_index, document_tail,
                       phone_enc, phone_tail, household_key, created_by)
SELECT r.id, r.site_id, r.name, r.sex, r.birth_date, r.document_type, r.document_enc, r.document_index, r.document_tail,
       r.phone_enc, r.phone_tail, r.household_key, :actor
FROM unnest(:ids::uuid[], :site_ids::uuid[], :names::text[], :sexes::text[], :birth_dates::date[], :document_types::text[],
            :document_encs::text[], :document_indexes::bytea[], :document_tails::text[], :phone_encs::text[], :phone_tails::text[],
            :household_keys::text[])
     AS r(id, site_id, name, sex, birth_date, document_type, document_enc, document_index, document_tail, phone_enc, phone_tail, household_key);

-- name: bulk_insert_stays!
-- Seeding many stays at once (demo, scale data). Past stays (demo history) come closed: with
-- :outcomes and :ended_ats (NULL entries, or no arrays at all: active).
INSERT INTO stays (id, resident_id, site_id, room_id, room_number, floor, bed, category, origin_area, risk_level, arrival_batch,
                   regime_id, time_zone, admitted_at, day_one, period_start, planned_release_at, created_by, status, outcome, ended_at)
SELECT s.id, s.resident_id, s.site_id, s.room_id, s.room_number, s.floor, s.bed, s.category, s.origin_area, s.risk_level,
       s.arrival_batch, s.regime_id, s.time_zone, s.admitted_at, s.day_one, s.day_one, s.planned_release_at, :actor,
       CASE WHEN s.ended_at IS NULL THEN 'active' ELSE 'closed' END, s.outcome, s.ended_at
FROM unnest(:ids::uuid[], :resident_ids::uuid[], :site_ids::uuid[], :room_ids::uuid[], :room_numbers::text[], :floors::int[],
            :beds::int[], :categories::text[], :origin_areas::text[], :risk_levels::text[], :arrival_batches::text[],
            :regime_ids::uuid[], :time_zones::text[], :admitted_ats::timestamptz[], :day_ones::date[], :planned_release_ats::timestamptz[],
            :outcomes::text[], :ended_ats::timestamptz[])
     AS s(id, resident_id, site_id, room_id, room_number, floor, bed, category, origin_area, risk_level, arrival_batch,
          regime_id, time_zone, admitted_at, day_one, planned_release_at, outcome, ended_at);

-- name: compiled_room_board$
-- The RoomBoard persisted operation's whole response, as GraphQL would write it (service/stays/compiled.py).
-- Null for a site that is not the caller's or does not exist, like the generic resolver.
-- The JSON is written from templates with format() rather than json_build_object: half the CPU on a
-- whole site, and compact already (no second pass in Python). Strings that are not constrained to
-- safe characters go through to_json (escaping); a nullable value must be spelled out ('null'),
-- since format() writes NULL as nothing. Plan shape (the statement is prepared once, and
-- PostgreSQL keeps one generic plan for it): the floor is a range over rooms_site_floor_idx
-- whether or not one is asked for, and each room's stays are found by room (stays_bed_active_key);
-- the site test is IS NOT DISTINCT FROM so that it stays a filter even before the tables are analysed.
SELECT format('{"data":{"roomBoard":%s}}', CASE WHEN site.id IS NULL THEN 'null' ELSE '[' || coalesce((
    SELECT string_agg(format(
        '{"room":{"id":"%s","number":%s,"floor":%s,"beds":%s,"occupied":%s,"freeBeds":%s,"status":"%s","statusSince":"%s","version":%s},'
        '"occupants":[%s],"reservedBeds":[%s]}',
        r.id, to_json(r.number), r.floor, r.beds, r.occupied, r.beds - r.occupied, upper(r.status), gql_instant(r.status_since), r.version,
        CASE WHEN r.occupied > 0 THEN (
            SELECT string_agg(format(
                '{"id":"%s","bed":%s,"category":"%s","riskLevel":%s,"arrivalBatch":%s,"admittedAt":"%s","plannedReleaseAt":"%s",'
                '"quarantineDay":%s,"resident":{"id":"%s","name":%s,"sex":"%s","birthYear":%s}}',
                s.id, s.bed, upper(s.category), coalesce('"' || upper(s.risk_level) || '"', 'null'), to_json(s.arrival_batch),
                gql_instant(s.admitted_at), gql_instant(s.planned_release_at),
                ((:now::timestamptz AT TIME ZONE s.time_zone)::date - s.day_one) + 1,
                p.id, to_json(gql_masked_name(p.name)), upper(p.sex), coalesce(extract(year FROM p.birth_date)::int::text, 'null')
            ), ',' ORDER BY s.bed)
            FROM stays s JOIN residents p ON p.id = s.resident_id
            WHERE s.room_id = r.id AND s.status = 'active' AND s.site_id IS NOT DISTINCT FROM site.id
        ) END,
        -- Reservations in force (as stays.reserved_beds): the clock moves them, hence the cache's time bucket.
        (SELECT string_agg(format('{"bed":%s,"expiresAt":"%s"}', b.bed, gql_instant(b.expires_at)), ',' ORDER BY b.bed)
         FROM bed_reservations b WHERE b.room_id = r.id AND b.state = 'held' AND b.expires_at > now())
    ), ',' ORDER BY r.floor, r.number)
    FROM rooms r
    WHERE r.site_id = site.id AND r.floor BETWEEN coalesce(:floor::int, -2147483648) AND coalesce(:floor::int, 2147483647)
), '') || ']' END)
FROM (SELECT NULL) AS one
LEFT JOIN sites site ON site.id = :site_id AND (:site_ids::uuid[] IS NULL OR site.id = ANY(:site_ids::uuid[]));

-- name: compiled_occupancy$
-- The Occupancy persisted operation's whole response (service/stays/compiled.py): bed_summary and
-- releases_due of the sites in :site_ids (NULL = all), per site (id order) and in total.
WITH beds AS (
    SELECT site_id, count(*)::int AS rooms, coalesce(sum(beds), 0)::int AS beds_total, coalesce(sum(occupied), 0)::int AS beds_occupied,
           coalesce(sum(beds) FILTER (WHERE status = 'ready'), 0)::int AS beds_ready,
           coalesce(sum(beds - occupied) FILTER (WHERE status IN ('vacated', 'disinfecting', 'airing', 'sealed')), 0)::int AS beds_in_turnover,
           coalesce(sum(beds) FILTER (WHERE status = 'out_of_service'), 0)::int AS beds_out_of_service
    FROM rooms WHERE (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
    GROUP BY site_id
), due AS (
    SELECT site_id,
           count(*) FILTER (WHERE (planned_release_at AT TIME ZONE time_zone)::date <= (:now::timestamptz AT TIME ZONE time_zone)::date)::int AS today,
           count(*) FILTER (WHERE (planned_release_at AT TIME ZONE time_zone)::date = (:now::timestamptz AT TIME ZONE time_zone)::date + 1)::int AS tomorrow
    FROM stays
    WHERE status = 'active' AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
      AND planned_release_at < :now::timestamptz + interval '3 days'
    GROUP BY site_id
), per_site AS (
    SELECT b.*, coalesce(d.today, 0) AS today, coalesce(d.tomorrow, 0) AS tomorrow
    FROM beds b LEFT JOIN due d USING (site_id)
)
SELECT json_build_object('data', json_build_object('occupancy', json_build_object(
    'sites', coalesce(json_agg(json_build_object(
        'siteId', site_id, 'rooms', rooms, 'bedsTotal', beds_total, 'bedsOccupied', beds_occupied, 'bedsReady', beds_ready,
        'bedsInTurnover', beds_in_turnover, 'bedsOutOfService', beds_out_of_service,
        'releasesDueToday', today, 'releasesDueTomorrow', tomorrow) ORDER BY site_id), '[]'::json),
    'total', json_build_object(
        'siteId', NULL, 'rooms', coalesce(sum(rooms), 0), 'bedsTotal', coalesce(sum(beds_total), 0),
        'bedsOccupied', coalesce(sum(beds_occupied), 0), 'bedsReady', coalesce(sum(beds_ready), 0),
        'bedsInTurnover', coalesce(sum(beds_in_turnover), 0), 'bedsOutOfService', coalesce(sum(beds_out_of_service), 0),
        'releasesDueToday', coalesce(sum(today), 0), 'releasesDueTomorrow', coalesce(sum(tomorrow), 0)))))::text
FROM per_site;

-- name: compiled_stays$
-- The Stays persisted operation's whole response (service/stays/compiled.py): list_stays' page (limit + 1
-- rows say whether there is more), each stay's resident as the scoped loader sees it (null when the
-- resident now belongs to a site outside the caller's), cursors as encode_cursor([admitted_at, id]) writes.
WITH site AS (
    SELECT id FROM sites WHERE id = :site_id AND (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]))
), page AS (
    SELECT s.*, g.code AS regime_code, row_number() OVER (ORDER BY s.admitted_at DESC, s.id DESC) AS n
    FROM stays s JOIN site ON s.site_id = site.id JOIN regimes g ON g.id = s.regime_id
    WHERE (:status::text IS NULL OR s.status = :status::text)
      AND (:arrival_batch::text IS NULL OR s.arrival_batch = :arrival_batch::text)
      AND (:after_at::timestamptz IS NULL OR (s.admitted_at, s.id) < (:after_at::timestamptz, :after_id::uuid))
    ORDER BY s.admitted_at DESC, s.id DESC
    LIMIT :limit::int + 1
)
SELECT json_build_object('data', json_build_object('stays', json_build_object(
    'edges', coalesce(json_agg(json_build_object('node', json_build_object(
        'id', s.id, 'residentId', s.resident_id, 'roomId', s.room_id, 'roomNumber', s.room_number, 'floor', s.floor, 'bed', s.bed,
        'category', upper(s.category), 'riskLevel', upper(s.risk_level), 'arrivalBatch', s.arrival_batch, 'regimeCode', s.regime_code,
        'admittedAt', gql_instant(s.admitted_at), 'plannedReleaseAt', gql_instant(s.planned_release_at), 'status', upper(s.status),
        'endedAt', gql_instant(s.ended_at), 'outcome', upper(s.outcome), 'version', s.version,
        'quarantineDay', ((:now::timestamptz AT TIME ZONE s.time_zone)::date - s.day_one) + 1,
        'resident', (
            SELECT json_build_object('id', p.id, 'name', gql_masked_name(p.name), 'sex', upper(p.sex),
                                     'birthYear', extract(year FROM p.birth_date)::int)
            FROM residents p
            WHERE p.id = s.resident_id AND (:site_ids::uuid[] IS NULL OR p.site_id = ANY(:site_ids::uuid[])))
    )) ORDER BY s.n) FILTER (WHERE s.n <= :limit::int), '[]'::json),
    'pageInfo', json_build_object(
        'hasNextPage', count(*) > :limit::int,
        'endCursor', CASE WHEN count(*) > :limit::int THEN (array_agg(
            rtrim(translate(replace(encode(convert_to('["' || gql_instant(s.admitted_at) || '","' || s.id || '"]', 'UTF8'), 'base64'),
                                    E'\n', ''), '+/', '-_'), '=')
        ) FILTER (WHERE s.n = :limit::int))[1] END))))::text
FROM page s;

-- name: lock_admissions!
-- Admissions with client-chosen stay ids, one at a time per id (ids sorted by the caller): a
-- concurrent replay waits for the first attempt, then finds its stay instead of colliding.
SELECT pg_advisory_xact_lock(hashtextextended('stay-admission:' || i.id::text, 0))
FROM unnest(:ids::uuid[]) AS i(id);

-- name: site_beds
-- Every bed of a site with its attributes and whether an active stay lies there (allocation).
SELECT b.room_id, b.number, b.accessible, b.cot, b.oxygen,
       EXISTS (SELECT 1 FROM stays s WHERE s.room_id = b.room_id AND s.bed = b.number AND s.status = 'active') AS occupied
FROM beds b WHERE b.site_id = :site_id;

-- name: room_bed_attributes
SELECT number, accessible, cot, oxygen FROM beds WHERE room_id = :room_id;

-- name: room_beds
-- Beds of rooms with who lies there now and the reservation in force, if any.
SELECT b.id, b.site_id, b.room_id, b.number, b.accessible, b.cot, b.oxygen, b.version,
       (SELECT s.id FROM stays s WHERE s.room_id = b.room_id AND s.bed = b.number AND s.status = 'active') AS stay_id,
       (SELECT r.expires_at FROM bed_reservations r
        WHERE r.room_id = b.room_id AND r.bed = b.number AND r.state = 'held' AND r.expires_at > now()) AS reserved_until
FROM beds b
WHERE b.room_id = ANY(:room_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR b.site_id = ANY(:site_ids::uuid[]))
ORDER BY b.room_id, b.number;

-- name: get_beds
SELECT b.id, b.site_id, b.room_id, b.number, b.accessible, b.cot, b.oxygen, b.version,
       (SELECT s.id FROM stays s WHERE s.room_id = b.room_id AND s.bed = b.number AND s.status = 'active') AS stay_id,
       (SELECT r.expires_at FROM bed_reservations r
        WHERE r.room_id = b.room_id AND r.bed = b.number AND r.state = 'held' AND r.expires_at > now()) AS reserved_until
FROM beds b
WHERE b.id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR b.site_id = ANY(:site_ids::uuid[]));

-- name: update_bed^
UPDATE beds SET accessible = coalesce(:accessible, accessible), cot = coalesce(:cot, cot), oxygen = coalesce(:oxygen, oxygen),
                version = version + 1, updated_at = now(), updated_by = :actor
WHERE id = :id AND version = :version AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
RETURNING id;

-- name: bed_history
-- The stays that lay on a bed, newest first: its occupancy history.
SELECT s.id AS stay_id, s.resident_id, s.admitted_at, s.ended_at, s.outcome
FROM beds b JOIN stays s ON s.room_id = b.room_id AND s.bed = b.number
WHERE b.id = :id AND (:site_ids::uuid[] IS NULL OR b.site_id = ANY(:site_ids::uuid[]))
ORDER BY s.admitted_at DESC, s.id
LIMIT :limit;
