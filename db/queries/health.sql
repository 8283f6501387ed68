-- Health monitoring (health domain). Every read takes :site_ids (NULL = all sites).
--
-- These statements read stays and regimes directly (joins, never writes): a check-in must be
-- ONE round trip, and worklists are set-based over a whole site. Writes go through the
-- stays and sites services.

-- name: record_checkins^
-- Check-ins in ONE statement (one round trip, autocommit for single ones): scope check,
-- insert (an id already stored is a no-op), alert rules, audit rows and outbox events.
-- The items may come from several callers (concurrent single check-ins grouped into one
-- statement, service/groupcommit.py): each item names its caller (1-based), each caller has
-- its actor, role, request id and sites (pairs of :scope_callers / :scope_sites, or
-- :everywhere). Verdicts are per item (by position, 1-based); an id given twice is inserted
-- once, by its first acceptable item. Answers the created rows (records when :records,
-- always their ids), rows stored before, rejected items and events. (An Idempotency-Key
-- goes through service/idempotency.py like every other write.)
-- Every step is linear in the items: index probes and lookups in small sets (callers, the
-- id -> caller map), never a join of two item-sized sets (the planner cannot estimate
-- their sizes and would loop over one for each row of the other).
-- The items are ONE jsonb parameter (an array of objects, msgspec-encoded), not an array per
-- column: asyncpg encodes arrays element by element (a quarter of a batch's server CPU), and
-- without per-item array parameters the planner keeps one generic plan instead of planning
-- this statement again at every execution (a single check-in's largest cost in PostgreSQL).
WITH input AS (
    SELECT i.n::int AS n, i.id, i.stay_id, i.recorded_at, round(i.temperature_c::numeric, 1) AS temperature_c, i.spo2, i.pulse,
           coalesce(i.symptoms, '{}'::text[]) AS symptoms, coalesce(i.note, '') AS note, i.caller
    FROM ROWS FROM (jsonb_to_recordset(:items::jsonb) AS (id uuid, stay_id uuid, recorded_at timestamptz, temperature_c float8,
                                                          spo2 int, pulse int, symptoms text[], note text, caller int))
         WITH ORDINALITY AS i(id, stay_id, recorded_at, temperature_c, spo2, pulse, symptoms, note, caller, n)
),
caller AS (
    SELECT c.n::int AS caller, c.actor, c.actor_role, c.request_id, c.everywhere
    FROM unnest(:actors::text[], :actor_roles::text[], :request_ids::text[], :everywhere::bool[]) WITH ORDINALITY
         AS c(actor, actor_role, request_id, everywhere, n)
),
scope AS (
    SELECT s.caller, s.site_id FROM unnest(:scope_callers::int[], :scope_sites::uuid[]) AS s(caller, site_id)
),
verdict AS (
    SELECT i.*, s.site_id,
           CASE WHEN s.id IS NULL OR NOT ((SELECT c.everywhere FROM caller c WHERE c.caller = i.caller)
                                          OR EXISTS (SELECT 1 FROM scope WHERE scope.caller = i.caller AND scope.site_id = s.site_id))
                    THEN 'stay_not_found'
                -- recorded offline before the stay ended: still the resident's record
                WHEN s.status <> 'active' AND i.recorded_at > s.ended_at THEN 'stay_closed'
                -- a device clock a little behind is skew; before the admission is another stay's reading
                WHEN i.recorded_at < s.admitted_at - make_interval(secs => :clock_skew_s::float8) THEN 'recorded_before_admission'
                ELSE 'ok' END AS verdict
    -- LATERAL: an index probe per item, never a scan of stays
    FROM input i LEFT JOIN LATERAL (
        SELECT st.id, st.site_id, st.status, st.ended_at, st.admitted_at FROM stays st WHERE st.id = i.stay_id LIMIT 1
    ) s ON true
),
chosen AS (
    -- the first acceptable item of each id; a later one with that id replays it. An id stored
    -- before is not looked up here: the insert's own probe of the key skips it (ON CONFLICT)
    SELECT DISTINCT ON (v.id) v.* FROM verdict v
    WHERE v.verdict = 'ok'
    ORDER BY v.id, v.n
),
ins AS (
    INSERT INTO checkins (id, stay_id, site_id, recorded_at, temperature_c, spo2, pulse, symptoms, note, recorded_by)
    SELECT ch.id, ch.stay_id, ch.site_id, ch.recorded_at, ch.temperature_c, ch.spo2, ch.pulse, ch.symptoms, ch.note,
           (SELECT c.actor FROM caller c WHERE c.caller = ch.caller)
    FROM chosen ch
    ON CONFLICT (id) DO NOTHING
    RETURNING id, stay_id, site_id, recorded_at, received_at, temperature_c, spo2, pulse, symptoms, note, recorded_by
),
-- the rows stored before of the acceptable ids the insert skipped (usually none: then no probe at
-- all). The statement's snapshot does not show what ins wrote; an id a concurrent insert won (it
-- committed after the snapshot) is in neither, and the caller reads it (service/health/service.py)
stored AS (
    SELECT c.id, c.stay_id, c.site_id, c.recorded_at, c.received_at, c.temperature_c, c.spo2, c.pulse, c.symptoms,
           c.note, c.recorded_by
    FROM checkins c
    WHERE c.id = ANY(ARRAY(SELECT v.id FROM verdict v WHERE v.verdict = 'ok' AND v.id NOT IN (SELECT ins.id FROM ins)))
),
-- who sent each inserted id (ON CONFLICT may have skipped some of chosen: a concurrent insert of that id won);
-- with one caller (a batch, a lone check-in) nobody needs asking
sender AS (
    SELECT CASE WHEN cardinality(:actors::text[]) > 1 THEN jsonb_object_agg(ch.id, ch.caller) END AS of FROM chosen ch
),
raised AS (
    INSERT INTO alerts (site_id, stay_id, kind, dedup_key, detail)
    SELECT ins.site_id, ins.stay_id, r.kind, ins.id::text, r.detail
    FROM ins CROSS JOIN LATERAL (VALUES
        ('fever', ins.temperature_c >= :fever_c::numeric,
         jsonb_build_object('checkin_id', ins.id, 'temperature_c', ins.temperature_c)),
        ('low_spo2', ins.spo2 < :low_spo2::int,
         jsonb_build_object('checkin_id', ins.id, 'spo2', ins.spo2)),
        -- symptoms are distinct (the input's Struct sorts and dedups them); most check-ins have none
        ('symptoms', cardinality(ins.symptoms) >= :alarm_count::int
                     AND (SELECT count(*) FROM unnest(ins.symptoms) AS s WHERE s = ANY(:alarm_symptoms::text[])) >= :alarm_count::int,
         jsonb_build_object('checkin_id', ins.id, 'symptoms', to_jsonb(ins.symptoms)))
    ) AS r(kind, hit, detail)
    -- the rules' conditions, once more on ins alone: most readings are normal and build no detail
    WHERE (ins.temperature_c >= :fever_c::numeric OR ins.spo2 < :low_spo2::int OR cardinality(ins.symptoms) >= :alarm_count::int)
      AND r.hit
    ON CONFLICT ON CONSTRAINT alerts_dedup_key DO NOTHING
    RETURNING id, site_id, stay_id, kind, dedup_key, version
),
audited AS (
    INSERT INTO audit_log (actor, actor_role, action, site_id, subject_id, fields, request_id)
    SELECT c.actor, c.actor_role, 'checkin.record', ins.site_id, ins.stay_id,
           '{temperature_c,spo2,pulse,symptoms,note}'::text[], c.request_id
    FROM ins CROSS JOIN sender JOIN caller c ON c.caller = coalesce((sender.of ->> ins.id::text)::int, 1)
    RETURNING id
),
emitted AS (
    INSERT INTO events (site_id, type, subject_id, data, actor, request_id)
    SELECT ins.site_id, 'health.checkin_recorded', ins.id, jsonb_build_object('stay_id', ins.stay_id), c.actor, c.request_id
    FROM ins CROSS JOIN sender JOIN caller c ON c.caller = coalesce((sender.of ->> ins.id::text)::int, 1)
    UNION ALL
    SELECT raised.site_id, 'health.alert_raised', raised.id,
           jsonb_build_object('stay_id', raised.stay_id, 'kind', raised.kind, 'version', raised.version), c.actor, c.request_id
    FROM raised CROSS JOIN sender JOIN caller c ON c.caller = coalesce((sender.of ->> raised.dedup_key)::int, 1)
    RETURNING id, site_id, type, subject_id, data, actor, at
)
-- json, not jsonb: text out, no binary form built in between. The events come back as one array
-- per column (asyncpg decodes them in C), not as JSON objects: json_build_object over 500 events
-- was about 5 ms of the backend's ~65 ms for a batch (statement variants timed on one connection).
SELECT CASE WHEN :records::bool THEN (SELECT json_agg(json_build_object(
            'id', id, 'stay_id', stay_id, 'site_id', site_id, 'recorded_at', recorded_at, 'received_at', received_at,
            'temperature_c', temperature_c, 'spo2', spo2, 'pulse', pulse, 'symptoms', symptoms, 'note', note,
            'recorded_by', recorded_by)) FROM ins)::text END AS created,
       ARRAY(SELECT id FROM ins) AS created_ids,
       (SELECT json_agg(json_build_object(
            'id', id, 'stay_id', stay_id, 'site_id', site_id, 'recorded_at', recorded_at, 'received_at', received_at,
            'temperature_c', temperature_c, 'spo2', spo2, 'pulse', pulse, 'symptoms', symptoms, 'note', note,
            'recorded_by', recorded_by)) FROM stored)::text AS stored,
       (SELECT json_object_agg(n, verdict) FROM verdict WHERE verdict <> 'ok')::text AS rejected,
       e.event_ids, e.event_sites, e.event_types, e.event_subjects, e.event_data, e.event_actors, e.event_at
-- one pass over emitted: the arrays are in the same (insertion) order
FROM (SELECT array_agg(id) AS event_ids, array_agg(site_id) AS event_sites, array_agg(type) AS event_types,
             array_agg(subject_id) AS event_subjects, array_agg(data::text) AS event_data, array_agg(actor) AS event_actors,
             array_agg(at) AS event_at
      FROM emitted) AS e;

-- name: get_checkins
SELECT id, stay_id, site_id, recorded_at, received_at, temperature_c::float8 AS temperature_c, spo2, pulse, symptoms, note, recorded_by
FROM checkins
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: stay_checkins
SELECT id, stay_id, site_id, recorded_at, received_at, temperature_c::float8 AS temperature_c, spo2, pulse, symptoms, note, recorded_by
FROM checkins
WHERE stay_id = ANY(:stay_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY recorded_at DESC, id
LIMIT :limit;

-- name: insert_events
-- Outbox rows of a set-based write, one statement (service/bus.py's table; bus.track publishes them).
INSERT INTO events (site_id, type, subject_id, data, actor, request_id)
SELECT e.site_id, e.type, e.subject_id, e.data::jsonb, :actor, :request_id::text
FROM unnest(:site_ids::uuid[], :types::text[], :subject_ids::uuid[], :datas::text[]) AS e(site_id, type, subject_id, data)
RETURNING id, site_id, type, subject_id, data, actor, at;

-- name: insert_audit!
-- Audit rows of a batch write, ONE statement (service/access/audit.py's table).
INSERT INTO audit_log (actor, actor_role, action, site_id, subject_id, fields, request_id)
SELECT :actor, :actor_role, :action, a.site_id, a.subject_id, :fields::text[], :request_id::text
FROM unnest(:site_ids::uuid[], :subject_ids::uuid[]) AS a(site_id, subject_id);

-- name: active_stays_for_samples
SELECT s.id, s.site_id, s.resident_id, s.day_one, s.time_zone, s.status
FROM stays s
WHERE s.id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR s.site_id = ANY(:site_ids::uuid[]));

-- name: insert_samples
-- Swabs and pool tubes; an id or barcode already stored is skipped (the caller reports which).
INSERT INTO samples (id, site_id, stay_id, pool_id, barcode, kind, scheduled_day, members, collected_at, collected_by)
SELECT i.id, i.site_id, i.stay_id, i.pool_id, i.barcode, i.kind, i.scheduled_day, i.members, i.collected_at, :actor
FROM unnest(:ids::uuid[], :site_ids::uuid[], :stay_ids::uuid[], :pool_ids::uuid[], :barcodes::text[], :kinds::text[],
            :scheduled_days::int[], :members::int[], :collected_ats::timestamptz[])
     AS i(id, site_id, stay_id, pool_id, barcode, kind, scheduled_day, members, collected_at)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: get_samples
SELECT id, site_id, stay_id, pool_id, barcode, kind, scheduled_day, members, collected_at, collected_by, result,
       ct_values::float8[] AS ct_values, resulted_at
FROM samples
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: samples_by_barcode
SELECT id, site_id, barcode
FROM samples WHERE barcode = ANY(:barcodes::text[]);

-- name: stay_samples
SELECT id, site_id, stay_id, pool_id, barcode, kind, scheduled_day, members, collected_at, collected_by, result,
       ct_values::float8[] AS ct_values, resulted_at
FROM samples
WHERE stay_id = ANY(:stay_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY collected_at DESC, id;

-- name: fulfil_retests
-- A new swab of a stay collects its open retest (after a positive pool).
UPDATE retests r SET sample_id = x.sample_id
FROM unnest(:stay_ids::uuid[], :sample_ids::uuid[]) AS x(stay_id, sample_id)
WHERE r.stay_id = x.stay_id AND r.sample_id IS NULL
RETURNING r.id;

-- name: lock_samples_by_barcode
-- The tubes a lab upload names, locked so that two uploads of one barcode serialize.
SELECT id, site_id, stay_id, pool_id, barcode, kind, scheduled_day, members, result, ct_values::float8[] AS ct_values, resulted_at
FROM samples
WHERE barcode = ANY(:barcodes::text[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY id
FOR UPDATE;

-- name: set_results
-- Results of tubes (and, for pools, of their members: negative/invalid as the pool, 'retest' when positive).
WITH x AS (
    SELECT i.id, i.result, i.ct_values, i.resulted_at
    FROM unnest(:ids::uuid[], :results::text[], :ct_values::text[], :resulted_ats::timestamptz[]) AS i(id, result, ct_values, resulted_at)
),
tubes AS (
    UPDATE samples s SET result = x.result, ct_values = x.ct_values::real[], resulted_at = x.resulted_at, resulted_by = :actor
    FROM x WHERE s.id = x.id
    RETURNING s.id
)
UPDATE samples m SET result = CASE WHEN x.result = 'positive' THEN 'retest' ELSE x.result END,
                     resulted_at = x.resulted_at, resulted_by = :actor
FROM x WHERE m.pool_id = x.id
RETURNING m.id, m.site_id, m.stay_id, m.pool_id, m.scheduled_day, m.result;

-- name: open_retests
INSERT INTO retests (site_id, stay_id, pool_id, scheduled_day)
SELECT r.site_id, r.stay_id, r.pool_id, r.scheduled_day
FROM unnest(:site_ids::uuid[], :stay_ids::uuid[], :pool_ids::uuid[], :scheduled_days::int[]) AS r(site_id, stay_id, pool_id, scheduled_day)
ON CONFLICT ON CONSTRAINT retests_once DO NOTHING
RETURNING id, stay_id;

-- name: release_blockers^
-- Test results that block release of a stay (and of the stays it was moved from: same resident, same
-- day 1): the one rule of migration 0035, which the swab worklist reads too.
SELECT positive, retest_open, days_not_negative, days_unswabbed
FROM stay_test_status(:resident_id, :day_one, :test_days::int[], :today_day);

-- name: insert_alert^
INSERT INTO alerts (site_id, stay_id, kind, dedup_key, detail)
VALUES (:site_id, :stay_id, :kind, :dedup_key, :detail)
ON CONFLICT ON CONSTRAINT alerts_dedup_key DO NOTHING
RETURNING id;

-- name: get_alerts
SELECT id, site_id, stay_id, kind, detail, state, raised_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, note, version
FROM alerts
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: stay_alerts
SELECT id, site_id, stay_id, kind, detail, state, raised_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, note, version
FROM alerts
WHERE stay_id = ANY(:stay_ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
ORDER BY raised_at DESC, id;

-- name: list_alerts
-- A site's alerts, newest first; keyset on (raised_at DESC, id).
SELECT id, site_id, stay_id, kind, detail, state, raised_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, note, version
FROM alerts
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (:states::text[] IS NULL OR state = ANY(:states::text[]))
  AND (:after_at::timestamptz IS NULL OR (raised_at, id) < (:after_at::timestamptz, :after_id::uuid))
ORDER BY raised_at DESC, id DESC
LIMIT :limit;

-- name: set_alert_state^
UPDATE alerts SET
    state = :state,
    acknowledged_at = CASE WHEN :state = 'acknowledged' OR acknowledged_at IS NOT NULL THEN coalesce(acknowledged_at, now()) END,
    acknowledged_by = CASE WHEN :state = 'acknowledged' OR acknowledged_by IS NOT NULL THEN coalesce(acknowledged_by, :actor) END,
    resolved_at = CASE WHEN :state = 'resolved' THEN now() END,
    resolved_by = CASE WHEN :state = 'resolved' THEN :actor END,
    note = CASE WHEN :note = '' THEN note ELSE :note END,
    version = version + 1
WHERE id = :id AND version = :version AND state = ANY(:from_states::text[])
RETURNING id;

-- name: sweep_missed_checkins
-- Raise missed_checkin for every active stay whose last closed slot (a half-day for two a day,
-- in the site's time zone) got no check-in, once the grace period after it has passed. The slot
-- must have begun after admission. alerts_dedup_key makes a second sweep of the same slot a no-op.
WITH s AS (
    SELECT st.id, st.site_id, st.time_zone, st.admitted_at, r.checkins_per_day AS cpd,
           ((:now::timestamptz - make_interval(mins => :grace_minutes::int)) AT TIME ZONE st.time_zone) AS local_check
    FROM stays st JOIN regimes r ON r.id = st.regime_id
    WHERE st.status = 'active' AND r.checkins_per_day > 0
),
slot AS (
    SELECT s.id, s.site_id, s.time_zone, s.admitted_at, s.cpd,
           date_trunc('day', s.local_check)
             + (interval '1 day' / s.cpd) * floor(extract(epoch FROM s.local_check - date_trunc('day', s.local_check)) / (86400.0 / s.cpd))
             - (interval '1 day' / s.cpd) AS start_local
    FROM s
),
missed AS (
    SELECT slot.id, slot.site_id, slot.start_local,
           slot.start_local AT TIME ZONE slot.time_zone AS slot_start,
           (slot.start_local + interval '1 day' / slot.cpd) AT TIME ZONE slot.time_zone AS slot_end
    FROM slot
    WHERE slot.admitted_at <= slot.start_local AT TIME ZONE slot.time_zone
      AND NOT EXISTS (SELECT 1 FROM checkins c
                      WHERE c.stay_id = slot.id
                        AND c.recorded_at >= slot.start_local AT TIME ZONE slot.time_zone
                        AND c.recorded_at < (slot.start_local + interval '1 day' / slot.cpd) AT TIME ZONE slot.time_zone)
),
raised AS (
    INSERT INTO alerts (site_id, stay_id, kind, dedup_key, detail)
    SELECT m.site_id, m.id, 'missed_checkin', to_char(m.start_local, 'YYYY-MM-DD"T"HH24:MI'),
           jsonb_build_object('slot_start', m.slot_start, 'slot_end', m.slot_end)
    FROM missed m
    ON CONFLICT ON CONSTRAINT alerts_dedup_key DO NOTHING
    RETURNING id, site_id, stay_id, kind, version
)
INSERT INTO events (site_id, type, subject_id, data, actor)
SELECT raised.site_id, 'health.alert_raised', raised.id, jsonb_build_object('stay_id', raised.stay_id, 'kind', raised.kind, 'version', raised.version),
       'system:health'
FROM raised
RETURNING id, site_id, type, subject_id, data, actor, at;

-- name: checkins_due
-- Active stays of a site (or floor) without a check-in in the current slot, by floor and room.
WITH s AS (
    SELECT st.id, st.resident_id, st.floor, st.room_number, st.bed, st.time_zone, st.admitted_at, r.checkins_per_day AS cpd,
           (:now::timestamptz AT TIME ZONE st.time_zone) AS local_now
    FROM stays st JOIN regimes r ON r.id = st.regime_id
    WHERE st.site_id = :site_id AND st.status = 'active' AND r.checkins_per_day > 0
      AND (:floor::int IS NULL OR st.floor = :floor::int)
      AND (:site_ids::uuid[] IS NULL OR st.site_id = ANY(:site_ids::uuid[]))
),
slot AS (
    SELECT s.id, s.resident_id, s.floor, s.room_number, s.bed, s.admitted_at,
           (date_trunc('day', s.local_now)
             + (interval '1 day' / s.cpd) * floor(extract(epoch FROM s.local_now - date_trunc('day', s.local_now)) / (86400.0 / s.cpd))
           ) AT TIME ZONE s.time_zone AS slot_start,
           (date_trunc('day', s.local_now)
             + (interval '1 day' / s.cpd) * (floor(extract(epoch FROM s.local_now - date_trunc('day', s.local_now)) / (86400.0 / s.cpd)) + 1)
           ) AT TIME ZONE s.time_zone AS slot_end,
           interval '1 day' / s.cpd AS slot_length,
           (SELECT max(c.recorded_at) FROM checkins c WHERE c.stay_id = s.id) AS last_checkin_at
    FROM s
)
SELECT id AS stay_id, resident_id, floor, room_number, bed, slot_start, slot_end, last_checkin_at,
       coalesce(last_checkin_at, admitted_at) < slot_start - slot_length AS overdue
FROM slot
WHERE last_checkin_at IS NULL OR last_checkin_at < slot_start
ORDER BY floor, room_number, bed;

-- name: swabs_due
-- Active stays of a site (or floor) that need a swab: a test day so far (today's or an earlier one
-- missed) without a usable swab, or a retest not yet swabbed. The rule is stay_test_status's, the
-- one the release check reads: a stay blocked for a missing swab is on this list.
SELECT st.id AS stay_id, st.resident_id, st.floor, st.room_number, st.bed, t.qday AS quarantine_day,
       x.retest_unswabbed AS retest, array_remove(x.days_unswabbed, t.qday) AS overdue_days
FROM stays st JOIN regimes r ON r.id = st.regime_id
CROSS JOIN LATERAL (SELECT ((:now::timestamptz AT TIME ZONE st.time_zone)::date - st.day_one + 1) AS qday) t
CROSS JOIN LATERAL stay_test_status(st.resident_id, st.day_one, r.test_days, t.qday) x
WHERE st.site_id = :site_id AND st.status = 'active'
  AND (:floor::int IS NULL OR st.floor = :floor::int)
  AND (:site_ids::uuid[] IS NULL OR st.site_id = ANY(:site_ids::uuid[]))
  AND (x.retest_unswabbed OR cardinality(x.days_unswabbed) > 0)
ORDER BY st.floor, st.room_number, st.bed;

-- name: swabs_scheduled
-- Swabs due per site over the next :days days (today included): test days not yet swabbed plus open retests.
WITH s AS (
    SELECT st.id, st.site_id, r.test_days,
           ((:now::timestamptz AT TIME ZONE st.time_zone)::date - st.day_one + 1) AS qday
    FROM stays st JOIN regimes r ON r.id = st.regime_id
    WHERE st.status = 'active' AND (:site_ids::uuid[] IS NULL OR st.site_id = ANY(:site_ids::uuid[]))
),
due AS (
    SELECT s.site_id FROM s CROSS JOIN LATERAL unnest(s.test_days) AS d
    WHERE d >= s.qday AND d < s.qday + :days::int
      AND NOT EXISTS (SELECT 1 FROM samples sm WHERE sm.stay_id = s.id AND sm.scheduled_day = d AND sm.result <> 'invalid')
    UNION ALL
    SELECT rt.site_id FROM retests rt
    WHERE rt.sample_id IS NULL AND (:site_ids::uuid[] IS NULL OR rt.site_id = ANY(:site_ids::uuid[]))
)
SELECT site_id, count(*)::int AS n FROM due GROUP BY site_id;

-- name: insert_reviews
INSERT INTO exposure_reviews (site_id, stay_id, source_stay_id, relation, source, reason, exposed_at, opened_by)
SELECT st.site_id, x.stay_id, :source_stay_id, x.relation, :source, :reason, :exposed_at, :actor
FROM unnest(:stay_ids::uuid[], :relations::text[]) AS x(stay_id, relation)
JOIN stays st ON st.id = x.stay_id
ON CONFLICT (stay_id, source_stay_id) WHERE state = 'open' DO NOTHING
RETURNING id;

-- name: get_reviews
SELECT id, site_id, stay_id, source_stay_id, relation, source, reason, exposed_at, state, opened_at, opened_by,
       decided_at, decided_by, note, version
FROM exposure_reviews
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: list_reviews
SELECT id, site_id, stay_id, source_stay_id, relation, source, reason, exposed_at, state, opened_at, opened_by,
       decided_at, decided_by, note, version
FROM exposure_reviews
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (:state::text IS NULL OR state = :state::text)
ORDER BY opened_at, id
LIMIT :limit;

-- name: decide_review^
UPDATE exposure_reviews SET state = :state, decided_at = now(), decided_by = :actor, note = :note, version = version + 1
WHERE id = :id AND version = :version AND state = 'open'
RETURNING id;

-- name: demo_history^
-- Demo seed (set-based): twice-daily check-ins over the last days of each active stay (a few
-- with fever, raising alerts), one swab per past test day (negative, resulted), audit rows.
WITH s AS (
    SELECT st.id, st.site_id, st.admitted_at, st.day_one, st.time_zone, r.test_days
    FROM stays st JOIN regimes r ON r.id = st.regime_id
    WHERE st.id = ANY(:stay_ids::uuid[]) AND st.status = 'active'
),
c AS (
    INSERT INTO checkins (id, stay_id, site_id, recorded_at, received_at, temperature_c, spo2, pulse, symptoms, note, recorded_by)
    SELECT gen_random_uuid(), s.id, s.site_id, t, t + interval '2 minutes',
           CASE WHEN t > now() - interval '12 hours' AND hashtext(s.id::text) % 37 = 0 THEN 38.1
                ELSE round((36.1 + random() * 0.9)::numeric, 1) END,
           95 + floor(random() * 5)::int, 60 + floor(random() * 30)::int,
           CASE WHEN hashtext(s.id::text || t::text) % 23 = 0 THEN '{fatigue}'::text[] ELSE '{}'::text[] END, '', :actor
    FROM s CROSS JOIN LATERAL generate_series(greatest(s.admitted_at, now() - interval '3 days') + interval '1 hour', now(), interval '12 hours') AS t
    RETURNING id, stay_id, site_id, temperature_c
),
a AS (
    INSERT INTO alerts (site_id, stay_id, kind, dedup_key, detail)
    SELECT c.site_id, c.stay_id, 'fever', c.id::text, jsonb_build_object('checkin_id', c.id, 'temperature_c', c.temperature_c)
    FROM c WHERE c.temperature_c >= 37.3
    RETURNING id
),
sm AS (
    INSERT INTO samples (id, site_id, stay_id, barcode, kind, scheduled_day, collected_at, collected_by, result, resulted_at, resulted_by)
    SELECT gen_random_uuid(), s.id_site, s.id, 'D' || upper(substr(md5(s.id::text || d::text), 1, 12)), 'pcr', d,
           (s.day_one + d - 1 + time '08:30') AT TIME ZONE s.time_zone, :actor, 'negative',
           (s.day_one + d - 1 + time '20:00') AT TIME ZONE s.time_zone, 'client:demo-lab'
    FROM (SELECT id, site_id AS id_site, day_one, time_zone, test_days FROM s) AS s
    CROSS JOIN LATERAL unnest(s.test_days) AS d
    WHERE (s.day_one + d - 1 + time '20:00') AT TIME ZONE s.time_zone < now()
    RETURNING id, site_id, stay_id
),
au AS (
    INSERT INTO audit_log (actor, actor_role, action, site_id, subject_id, fields)
    SELECT :actor, 'command', 'checkin.record', site_id, stay_id, '{temperature_c,spo2,pulse,symptoms,note}'::text[] FROM c
    UNION ALL
    SELECT :actor, 'command', 'sample.record', site_id, stay_id, '{barcode,kind}'::text[] FROM sm
    RETURNING id
)
SELECT (SELECT count(*) FROM c)::int AS checkins, (SELECT count(*) FROM a)::int AS alerts, (SELECT count(*) FROM sm)::int AS samples,
       (SELECT count(*) FROM au)::int AS audited;

-- name: compiled_site_alerts$
-- The SiteAlerts persisted operation's whole response (service/health/compiled.py): list_alerts' page
-- (limit + 1 rows say whether there is more) with each alert's stay and resident as the scoped loaders
-- see them, cursors as encode_cursor([raised_at, id]) writes. NULL when the site is unknown (the
-- generic path's error answers that).
WITH site AS (
    SELECT id FROM sites WHERE id = :site_id AND (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]))
), page AS (
    SELECT a.*, row_number() OVER (ORDER BY a.raised_at DESC, a.id DESC) AS n
    FROM alerts a JOIN site ON a.site_id = site.id
    WHERE (:states::text[] IS NULL OR a.state = ANY(:states::text[]))
      AND (:after_at::timestamptz IS NULL OR (a.raised_at, a.id) < (:after_at::timestamptz, :after_id::uuid))
    ORDER BY a.raised_at DESC, a.id DESC
    LIMIT :limit::int + 1
)
SELECT CASE WHEN NOT EXISTS (SELECT FROM site) THEN NULL ELSE json_build_object('data', json_build_object('siteAlerts', json_build_object(
    'edges', coalesce(json_agg(json_build_object('node', json_build_object(
        'id', a.id, 'stayId', a.stay_id, 'kind', upper(a.kind), 'detail', a.detail, 'state', upper(a.state),
        'raisedAt', gql_instant(a.raised_at), 'acknowledgedAt', gql_instant(a.acknowledged_at), 'acknowledgedBy', a.acknowledged_by,
        'resolvedAt', gql_instant(a.resolved_at), 'resolvedBy', a.resolved_by, 'note', a.note, 'version', a.version,
        'stay', (
            SELECT json_build_object('id', s.id, 'roomNumber', s.room_number, 'floor', s.floor, 'bed', s.bed,
                'quarantineDay', ((:now::timestamptz AT TIME ZONE s.time_zone)::date - s.day_one) + 1,
                'resident', (SELECT json_build_object('id', p.id, 'name', gql_masked_name(p.name))
                             FROM residents p
                             WHERE p.id = s.resident_id AND (:site_ids::uuid[] IS NULL OR p.site_id = ANY(:site_ids::uuid[]))))
            FROM stays s
            WHERE s.id = a.stay_id AND (:site_ids::uuid[] IS NULL OR s.site_id = ANY(:site_ids::uuid[])))
    )) ORDER BY a.n) FILTER (WHERE a.n <= :limit::int), '[]'::json),
    'pageInfo', json_build_object(
        'hasNextPage', count(*) > :limit::int,
        'endCursor', CASE WHEN count(*) > :limit::int THEN (array_agg(
            rtrim(translate(replace(encode(convert_to('["' || gql_instant(a.raised_at) || '","' || a.id || '"]', 'UTF8'), 'base64'),
                                    E'\n', ''), '+/', '-_'), '=')
        ) FILTER (WHERE a.n = :limit::int))[1] END))))::text END
FROM page a;

-- name: compiled_swabs_due$
-- The SwabsDue persisted operation's whole response (service/health/compiled.py): swabs_due's rows (the
-- same rule, stay_test_status) with each stay and resident as the scoped loaders see them. NULL for an
-- unknown site (the generic error).
WITH site AS (
    SELECT id FROM sites WHERE id = :site_id AND (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]))
), due AS (
    SELECT st.id, st.resident_id, st.floor, st.room_number, st.bed, t.qday, x.retest_unswabbed AS retest
    FROM stays st JOIN site ON st.site_id = site.id JOIN regimes r ON r.id = st.regime_id
    CROSS JOIN LATERAL (SELECT ((:now::timestamptz AT TIME ZONE st.time_zone)::date - st.day_one + 1) AS qday) t
    CROSS JOIN LATERAL stay_test_status(st.resident_id, st.day_one, r.test_days, t.qday) x
    WHERE st.status = 'active' AND (:floor::int IS NULL OR st.floor = :floor::int)
      AND (x.retest_unswabbed OR cardinality(x.days_unswabbed) > 0)
)
SELECT CASE WHEN NOT EXISTS (SELECT FROM site) THEN NULL ELSE json_build_object('data', json_build_object('swabsDue', coalesce(json_agg(
    json_build_object(
        'stayId', d.id, 'residentId', d.resident_id, 'floor', d.floor, 'roomNumber', d.room_number, 'bed', d.bed,
        'quarantineDay', d.qday, 'retest', d.retest,
        'stay', json_build_object('id', d.id, 'resident', (
            SELECT json_build_object('id', p.id, 'name', gql_masked_name(p.name))
            FROM residents p WHERE p.id = d.resident_id AND (:site_ids::uuid[] IS NULL OR p.site_id = ANY(:site_ids::uuid[])))))
    ORDER BY d.floor, d.room_number, d.bed), '[]'::json)))::text END
FROM due d;

-- name: compiled_checkins_due$
-- The CheckinsDue persisted operation's whole response (service/health/compiled.py): checkins_due's rows
-- with each stay and resident as the scoped loaders see them. NULL for an unknown site (the generic error).
WITH site AS (
    SELECT id FROM sites WHERE id = :site_id AND (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]))
), s AS (
    SELECT st.id, st.resident_id, st.floor, st.room_number, st.bed, st.time_zone, st.admitted_at, st.day_one, r.checkins_per_day AS cpd,
           (:now::timestamptz AT TIME ZONE st.time_zone) AS local_now
    FROM stays st JOIN site ON st.site_id = site.id JOIN regimes r ON r.id = st.regime_id
    WHERE st.status = 'active' AND r.checkins_per_day > 0 AND (:floor::int IS NULL OR st.floor = :floor::int)
), slot AS (
    SELECT s.*,
           (date_trunc('day', s.local_now)
             + (interval '1 day' / s.cpd) * floor(extract(epoch FROM s.local_now - date_trunc('day', s.local_now)) / (86400.0 / s.cpd))
           ) AT TIME ZONE s.time_zone AS slot_start,
           (date_trunc('day', s.local_now)
             + (interval '1 day' / s.cpd) * (floor(extract(epoch FROM s.local_now - date_trunc('day', s.local_now)) / (86400.0 / s.cpd)) + 1)
           ) AT TIME ZONE s.time_zone AS slot_end,
           interval '1 day' / s.cpd AS slot_length,
           (SELECT max(c.recorded_at) FROM checkins c WHERE c.stay_id = s.id) AS last_checkin_at
    FROM s
)
SELECT CASE WHEN NOT EXISTS (SELECT FROM site) THEN NULL ELSE json_build_object('data', json_build_object('checkinsDue', coalesce(json_agg(
    json_build_object(
        'stayId', d.id, 'residentId', d.resident_id, 'floor', d.floor, 'roomNumber', d.room_number, 'bed', d.bed,
        'slotStart', gql_instant(d.slot_start), 'slotEnd', gql_instant(d.slot_end), 'lastCheckinAt', gql_instant(d.last_checkin_at),
        'overdue', coalesce(d.last_checkin_at, d.admitted_at) < d.slot_start - d.slot_length,
        'stay', json_build_object('id', d.id, 'quarantineDay', (d.local_now::date - d.day_one) + 1, 'resident', (
            SELECT json_build_object('id', p.id, 'name', gql_masked_name(p.name))
            FROM residents p WHERE p.id = d.resident_id AND (:site_ids::uuid[] IS NULL OR p.site_id = ANY(:site_ids::uuid[])))))
    ORDER BY d.floor, d.room_number, d.bed), '[]'::json)))::text END
FROM slot d
WHERE d.last_checkin_at IS NULL OR d.last_checkin_at < d.slot_start;

-- name: demo_past_history^
-- Demo seed of the past stays (closed, service/stays/demo.py seed_history): twice-daily check-ins
-- while they stayed (about one slot in 25 missed, each raising a missed_checkin alert that was
-- later resolved), one swab per test day before they left, resulted 6-30 hours after collection:
-- negative, except the last swab of a transferred resident (positive).
WITH s AS (
    SELECT st.id, st.site_id, st.admitted_at, st.ended_at, st.outcome, st.day_one, st.time_zone, r.test_days
    FROM stays st JOIN regimes r ON r.id = st.regime_id
    WHERE st.id = ANY(:stay_ids::uuid[]) AND st.status = 'closed'
),
slot AS (
    SELECT s.id, s.site_id, t, abs(hashtext(s.id::text || t::text)) % 25 = 0 AS missed
    FROM s CROSS JOIN LATERAL generate_series(s.admitted_at + interval '1 hour', s.ended_at - interval '1 hour', interval '12 hours') AS t
),
c AS (
    INSERT INTO checkins (id, stay_id, site_id, recorded_at, received_at, temperature_c, spo2, pulse, symptoms, note, recorded_by)
    SELECT gen_random_uuid(), slot.id, slot.site_id, slot.t, slot.t + interval '2 minutes', round((36.1 + random() * 0.9)::numeric, 1),
           95 + floor(random() * 5)::int, 60 + floor(random() * 30)::int, '{}'::text[], '', :actor
    FROM slot WHERE NOT slot.missed
    RETURNING id
),
a AS (
    INSERT INTO alerts (site_id, stay_id, kind, dedup_key, detail, state, raised_at, resolved_at, resolved_by, note)
    SELECT slot.site_id, slot.id, 'missed_checkin', to_char(slot.t, 'YYYY-MM-DD"T"HH24:MI'),
           jsonb_build_object('slot_start', slot.t), 'resolved', slot.t + interval '13 hours', slot.t + interval '14 hours', :actor,
           'checked by phone'
    FROM slot WHERE slot.missed
    RETURNING id
),
due AS (
    SELECT s.id, s.site_id, s.outcome, d, (s.day_one + d - 1 + time '08:30') AT TIME ZONE s.time_zone AS collected_at,
           max(d) OVER (PARTITION BY s.id) AS last_d
    FROM s CROSS JOIN LATERAL unnest(s.test_days) AS d
    WHERE (s.day_one + d - 1 + time '08:30') AT TIME ZONE s.time_zone BETWEEN s.admitted_at AND s.ended_at
),
sm AS (
    INSERT INTO samples (id, site_id, stay_id, barcode, kind, scheduled_day, collected_at, collected_by, result, resulted_at, resulted_by)
    SELECT gen_random_uuid(), due.site_id, due.id, 'H' || upper(substr(md5(due.id::text || due.d::text), 1, 12)), 'pcr', due.d,
           due.collected_at, :actor,
           CASE WHEN due.outcome = 'transferred' AND due.d = due.last_d THEN 'positive' ELSE 'negative' END,
           due.collected_at + make_interval(hours => 6 + abs(hashtext(due.id::text || due.d::text)) % 24), 'client:demo-lab'
    FROM due
    RETURNING id
)
SELECT (SELECT count(*) FROM c)::int AS checkins, (SELECT count(*) FROM a)::int AS alerts, (SELECT count(*) FROM sm)::int AS samples;
