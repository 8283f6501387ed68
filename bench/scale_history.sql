-- History for `python -m bench scale`: $1 closed stays, spread over every site that has rooms,
-- each with what a finished stay leaves behind: 10 check-ins, 3 swabs, an alert every third stay,
-- 2 stock movements, 13 audit rows, 10 outbox events, 5 room status changes and a passed
-- disinfection task. Set-based (generate_series) on the real schema, triggers included.
-- Everything lies in the past, before the demo's current data, so current screens look the same
-- at any size: only the history behind them grows. Stock movements follow in batches (next file):
-- each one updates its stock row and the site's generation, and a row updated thousands of times
-- in one transaction drags an ever longer chain of versions.

CREATE TEMP TABLE bench_rooms ON COMMIT DROP AS
SELECT row_number() OVER (ORDER BY site_id, number) - 1 AS n, id, site_id, number, floor
FROM rooms;

CREATE TABLE bench_stays AS
SELECT g AS n,
       gen_random_uuid() AS resident_id,
       gen_random_uuid() AS stay_id,
       r.id AS room_id, r.site_id, r.number, r.floor,
       now() - interval '30 days' - make_interval(hours => g % 8000) AS admitted_at
FROM generate_series(1, $1::int) AS g
JOIN bench_rooms AS r ON r.n = g % (SELECT count(*) FROM bench_rooms);

INSERT INTO residents (id, site_id, name, sex, document_type, document_enc, document_index, document_tail, created_by)
SELECT resident_id, site_id, 'history', 'unknown', 'passport', 'bench', decode(md5('bench-history-' || n), 'hex'), '0000', 'bench'
FROM bench_stays;

INSERT INTO stays (id, resident_id, site_id, room_id, room_number, floor, bed, category, regime_id, time_zone,
                   admitted_at, day_one, period_start, planned_release_at, status, ended_at, outcome, created_by)
SELECT s.stay_id, s.resident_id, s.site_id, s.room_id, s.number, s.floor, 1, 'close_contact', g.id, 'Asia/Shanghai',
       s.admitted_at, s.admitted_at::date, s.admitted_at::date, s.admitted_at + interval '7 days',
       'closed', s.admitted_at + interval '7 days', 'released', 'bench'
FROM bench_stays AS s, (SELECT id FROM regimes WHERE code = 'close_contact') AS g;

INSERT INTO checkins (id, stay_id, site_id, recorded_at, received_at, temperature_c, spo2, pulse, recorded_by)
SELECT gen_random_uuid(), s.stay_id, s.site_id, s.admitted_at + make_interval(hours => 12 * k),
       s.admitted_at + make_interval(hours => 12 * k), 36.5, 98, 72, 'staff:bench'
FROM bench_stays AS s, generate_series(1, 10) AS k;

INSERT INTO samples (id, site_id, stay_id, barcode, kind, scheduled_day, collected_at, collected_by, result, resulted_at, resulted_by)
SELECT gen_random_uuid(), s.site_id, s.stay_id, 'BH' || s.n || '-' || k, 'pcr', k, s.admitted_at + make_interval(days => k - 1),
       'staff:bench', 'negative', s.admitted_at + make_interval(days => k), 'client:bench'
FROM bench_stays AS s, generate_series(1, 3) AS k;

INSERT INTO alerts (site_id, stay_id, kind, dedup_key, detail, state, raised_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by)
SELECT s.site_id, s.stay_id, 'fever', 'bench-' || s.n, '{"temperature_c": 37.8}', 'resolved', s.admitted_at + interval '1 day',
       s.admitted_at + interval '25 hours', 'staff:bench', s.admitted_at + interval '26 hours', 'staff:bench'
FROM bench_stays AS s
WHERE s.n % 3 = 0;

INSERT INTO audit_log (at, actor, actor_role, action, site_id, subject_id, fields)
SELECT s.admitted_at + make_interval(hours => k), 'staff:bench', 'site_staff', 'checkin.record', s.site_id, s.stay_id, '{}'
FROM bench_stays AS s, generate_series(1, 13) AS k;

INSERT INTO events (site_id, type, subject_id, data, actor, at)
SELECT s.site_id, 'health.checkin_recorded', s.stay_id, '{}', 'staff:bench', s.admitted_at + make_interval(hours => 12 * k)
FROM bench_stays AS s, generate_series(1, 10) AS k;

INSERT INTO room_status_changes (room_id, site_id, from_status, to_status, action, actor, reason, at)
SELECT s.room_id, s.site_id, t.from_status, t.to_status, t.action, 'staff:bench', '', s.admitted_at + make_interval(hours => t.h)
FROM bench_stays AS s,
     (VALUES ('ready', 'occupied', 'admit', 0), ('occupied', 'vacated', 'release', 168), ('vacated', 'disinfecting', 'start_disinfection', 169),
             ('disinfecting', 'airing', 'finish_disinfection', 170), ('airing', 'ready', 'pass_inspection', 171)) AS t(from_status, to_status, action, h);

INSERT INTO disinfection_tasks (room_id, site_id, state, opened_at, opened_by, started_at, finished_at, airing_until, inspected_at, inspected_by)
SELECT s.room_id, s.site_id, 'passed', s.admitted_at + interval '168 hours', 'staff:bench', s.admitted_at + interval '169 hours',
       s.admitted_at + interval '170 hours', s.admitted_at + interval '171 hours', s.admitted_at + interval '171 hours', 'staff:bench'
FROM bench_stays AS s;
