-- Rooms, their status history and disinfection tasks (sites domain).
-- Every read takes :site_ids (NULL = all sites) so that scoping cannot be forgotten.

-- name: insert_rooms
-- Bulk creation (a floor at once); ON CONFLICT lets a replayed request skip rooms that exist.
INSERT INTO rooms (site_id, number, floor, beds, notes)
SELECT :site_id, r.number, r.floor, r.beds, r.notes
FROM unnest(:numbers::text[], :floors::int[], :beds::int[], :notes::text[]) AS r(number, floor, beds, notes)
ON CONFLICT ON CONSTRAINT rooms_site_number_key DO NOTHING
RETURNING id, site_id, number, floor, beds, occupied, notes, status, status_since, status_by, status_reason, version, created_at, updated_at;

-- name: get_room^
SELECT id, site_id, number, floor, beds, occupied, notes, status, status_since, status_by, status_reason, version, created_at, updated_at
FROM rooms
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: get_rooms_by_ids
SELECT id, site_id, number, floor, beds, occupied, notes, status, status_since, status_by, status_reason, version, created_at, updated_at
FROM rooms
WHERE id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: lock_room^
-- The room row lock serialises every change of a room's beds and status.
SELECT id, site_id, number, floor, beds, occupied, notes, status, status_since, status_by, status_reason, version, created_at, updated_at
FROM rooms
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: lock_rooms_for_admission
-- An admission locks every room it may take in ONE statement, in id order, and waits for
-- rooms another admission holds (never skips them: that one may roll back). Two admissions
-- thus never hold each other's rooms crosswise. After a wait the row is re-checked, so a room
-- the other admission filled drops out.
SELECT id
FROM rooms
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (id = ANY(:room_ids::uuid[]) OR (:allocate::boolean AND status IN ('ready', 'occupied') AND occupied < beds))
ORDER BY id
FOR UPDATE;

-- name: list_rooms
-- A site's rooms (optionally one floor), ordered by floor and number, keyset-paginated.
SELECT id, site_id, number, floor, beds, occupied, notes, status, status_since, status_by, status_reason, version, created_at, updated_at
FROM rooms
WHERE site_id = :site_id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (:floor::int IS NULL OR floor = :floor::int)
  AND (:status::text IS NULL OR status = :status::text)
  AND (:after_floor::int IS NULL OR (floor, number) > (:after_floor::int, :after_number::text))
ORDER BY floor, number
LIMIT :limit;

-- name: set_room_state^
-- Status and occupancy change together, under the lock taken by lock_room.
UPDATE rooms SET
    status = :status,
    occupied = :occupied,
    status_since = CASE WHEN status = :status THEN status_since ELSE now() END,
    status_by = CASE WHEN status = :status THEN status_by ELSE :actor END,
    status_reason = CASE WHEN status = :status THEN status_reason ELSE :reason END,
    version = version + 1,
    updated_at = now()
WHERE id = :id
RETURNING id, site_id, number, floor, beds, occupied, notes, status, status_since, status_by, status_reason, version, created_at, updated_at;

-- name: update_room^
UPDATE rooms SET
    beds = coalesce(:beds, beds),
    notes = coalesce(:notes, notes),
    version = version + 1,
    updated_at = now()
WHERE id = :id AND version = :version AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
RETURNING id, site_id, number, floor, beds, occupied, notes, status, status_since, status_by, status_reason, version, created_at, updated_at;

-- name: insert_status_change^
INSERT INTO room_status_changes (room_id, site_id, from_status, to_status, action, actor, reason)
VALUES (:room_id, :site_id, :from_status, :to_status, :action, :actor, :reason)
RETURNING id;

-- name: insert_created_history!
-- Bulk history rows for rooms just created (a floor at once).
INSERT INTO room_status_changes (room_id, site_id, from_status, to_status, action, actor, reason)
SELECT r, :site_id, NULL, 'ready', 'create', :actor, '' FROM unnest(:room_ids::uuid[]) AS r;

-- name: room_histories
-- The latest :last status changes of each room, oldest first: bounded by what it returns, however
-- long a room's history grows (one index probe per room on room_status_changes_room_idx).
SELECT h.id, h.room_id, h.from_status, h.to_status, h.action, h.actor, h.reason, h.at
FROM (SELECT DISTINCT unnest(:room_ids::uuid[]) AS room_id) AS r
CROSS JOIN LATERAL (
    SELECT c.id, c.room_id, c.from_status, c.to_status, c.action, c.actor, c.reason, c.at
    FROM room_status_changes AS c
    WHERE c.room_id = r.room_id AND (:site_ids::uuid[] IS NULL OR c.site_id = ANY(:site_ids::uuid[]))
    ORDER BY c.id DESC
    LIMIT :last
) AS h
ORDER BY h.room_id, h.id;

-- name: open_task^
INSERT INTO disinfection_tasks (room_id, site_id, opened_by)
VALUES (:room_id, :site_id, :actor)
ON CONFLICT (room_id) WHERE state IN ('open', 'disinfecting', 'airing') DO UPDATE SET notes = disinfection_tasks.notes
RETURNING id, room_id, site_id, state, opened_at, opened_by, started_at, started_by, finished_at, finished_by,
          airing_until, inspected_at, inspected_by, failed_inspections, notes;

-- name: current_task^
SELECT id, room_id, site_id, state, opened_at, opened_by, started_at, started_by, finished_at, finished_by,
       airing_until, inspected_at, inspected_by, failed_inspections, notes
FROM disinfection_tasks
WHERE room_id = :room_id AND state IN ('open', 'disinfecting', 'airing');

-- name: tasks_of_rooms
-- The latest task of each room (board and room reads): one index probe per room
-- (disinfection_tasks_room_latest_idx), not every task the rooms ever had.
SELECT t.id, t.room_id, t.site_id, t.state, t.opened_at, t.opened_by, t.started_at, t.started_by, t.finished_at, t.finished_by,
       t.airing_until, t.inspected_at, t.inspected_by, t.failed_inspections, t.notes
FROM (SELECT DISTINCT unnest(:room_ids::uuid[]) AS room_id) AS r
CROSS JOIN LATERAL (
    SELECT d.id, d.room_id, d.site_id, d.state, d.opened_at, d.opened_by, d.started_at, d.started_by, d.finished_at, d.finished_by,
           d.airing_until, d.inspected_at, d.inspected_by, d.failed_inspections, d.notes
    FROM disinfection_tasks AS d
    WHERE d.room_id = r.room_id AND (:site_ids::uuid[] IS NULL OR d.site_id = ANY(:site_ids::uuid[]))
    ORDER BY d.opened_at DESC, d.id
    LIMIT 1
) AS t
ORDER BY t.room_id;

-- name: update_task^
UPDATE disinfection_tasks SET
    state = :state,
    started_at = CASE WHEN :state = 'disinfecting' THEN now() ELSE started_at END,
    started_by = CASE WHEN :state = 'disinfecting' THEN :actor ELSE started_by END,
    finished_at = CASE WHEN :state = 'airing' THEN now() ELSE finished_at END,
    finished_by = CASE WHEN :state = 'airing' THEN :actor ELSE finished_by END,
    airing_until = CASE WHEN :state = 'airing' THEN now() + make_interval(mins => :airing_minutes) ELSE airing_until END,
    inspected_at = CASE WHEN :inspected THEN now() ELSE inspected_at END,
    inspected_by = CASE WHEN :inspected THEN :actor ELSE inspected_by END,
    failed_inspections = failed_inspections + CASE WHEN :failed THEN 1 ELSE 0 END,
    notes = CASE WHEN :notes = '' THEN notes ELSE :notes END
WHERE id = :id
RETURNING id, room_id, site_id, state, opened_at, opened_by, started_at, started_by, finished_at, finished_by,
          airing_until, inspected_at, inspected_by, failed_inspections, notes;

-- name: airing_over$
SELECT airing_until IS NULL OR airing_until <= now() FROM disinfection_tasks WHERE id = :id;

-- name: bed_summary
SELECT site_id,
       count(*)::int AS rooms,
       coalesce(sum(beds), 0)::int AS beds_total,
       coalesce(sum(occupied), 0)::int AS beds_occupied,
       coalesce(sum(beds) FILTER (WHERE status = 'ready'), 0)::int AS beds_ready,
       coalesce(sum(beds - occupied) FILTER (WHERE status IN ('vacated', 'disinfecting', 'airing', 'sealed')), 0)::int AS beds_in_turnover,
       coalesce(sum(beds) FILTER (WHERE status = 'out_of_service'), 0)::int AS beds_out_of_service
FROM rooms
WHERE (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
GROUP BY site_id;

-- name: bulk_set_rooms!
-- Seeding: occupancy and status of many rooms at once (history rows for the status changes).
WITH changed AS (
    UPDATE rooms SET status = x.status, occupied = x.occupied, status_since = now(), status_by = :actor, version = version + 1, updated_at = now()
    FROM unnest(:room_ids::uuid[], :statuses::text[], :occupied::int[]) AS x(id, status, occupied)
    WHERE rooms.id = x.id
    RETURNING rooms.id, rooms.site_id, rooms.status
)
INSERT INTO room_status_changes (room_id, site_id, from_status, to_status, action, actor, reason)
SELECT id, site_id, 'ready', status, 'seed', :actor, 'demo' FROM changed;

-- name: compiled_rooms$
-- The Rooms persisted operation's whole response (service/sites/compiled.py): list_rooms' page
-- (limit + 1 rows say whether there is more) with each room's latest disinfection task, and the
-- cursors encode_cursor([floor, number]) writes (base64url of compact JSON, no padding).
WITH site AS (
    SELECT id FROM sites WHERE id = :site_id AND (:site_ids::uuid[] IS NULL OR id = ANY(:site_ids::uuid[]))
), page AS (
    SELECT r.id, r.number, r.floor, r.beds, r.occupied, r.status, r.status_since, r.status_reason, r.version,
           row_number() OVER (ORDER BY r.floor, r.number) AS n
    FROM rooms r JOIN site ON r.site_id = site.id
    WHERE (:floor::int IS NULL OR r.floor = :floor::int)
      AND (:status::text IS NULL OR r.status = :status::text)
      AND (:after_floor::int IS NULL OR (r.floor, r.number) > (:after_floor::int, :after_number::text))
    ORDER BY r.floor, r.number
    LIMIT :limit::int + 1
)
SELECT json_build_object('data', json_build_object('rooms', json_build_object(
    'edges', coalesce(json_agg(json_build_object('node', json_build_object(
        'id', p.id, 'number', p.number, 'floor', p.floor, 'beds', p.beds, 'occupied', p.occupied, 'freeBeds', p.beds - p.occupied,
        'status', upper(p.status), 'statusSince', gql_instant(p.status_since), 'statusReason', p.status_reason, 'version', p.version,
        'disinfection', (
            SELECT json_build_object('id', d.id, 'state', upper(d.state), 'startedAt', gql_instant(d.started_at),
                                     'finishedAt', gql_instant(d.finished_at), 'airingUntil', gql_instant(d.airing_until),
                                     'failedInspections', d.failed_inspections)
            FROM disinfection_tasks d
            WHERE d.room_id = p.id AND (:site_ids::uuid[] IS NULL OR d.site_id = ANY(:site_ids::uuid[]))
            ORDER BY d.opened_at DESC, d.id
            LIMIT 1)
    )) ORDER BY p.n) FILTER (WHERE p.n <= :limit::int), '[]'::json),
    'pageInfo', json_build_object(
        'hasNextPage', count(*) > :limit::int,
        'endCursor', CASE WHEN count(*) > :limit::int THEN (array_agg(
            rtrim(translate(replace(encode(convert_to('[' || p.floor || ',' || to_json(p.number)::text || ']', 'UTF8'), 'base64'), E'\n', ''), '+/', '-_'), '=')
        ) FILTER (WHERE p.n = :limit::int))[1] END))))::text
FROM page p;
