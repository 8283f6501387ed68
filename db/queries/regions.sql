-- Regions: the tree, site placement, roll-ups and daily snapshots.
-- Reads take :site_ids (NULL = every site) and :region_ids (the caller's region grants, '{}' = none).
--
-- The roll-up and snapshot statements are the command centre's reporting read model: they read
-- the other domains' ledgers (stays, rooms, check-ins, samples, alerts, reviews, transfers,
-- stock) set-based, one statement for any number of sites, rather than calling each domain
-- per site. They only read; every write stays with its domain.

-- name: list_regions
-- The regions a caller sees: everything (command without limits), else the subtrees it is
-- granted, their ancestors, and the ancestors of its sites' regions (names on the way down).
SELECT r.id, r.parent_id, r.level, r.code, r.name, r.path, r.version, r.created_at, r.updated_at,
       coalesce((SELECT array_agg(rs.site_id ORDER BY rs.site_id) FROM region_sites rs
                 WHERE rs.region_id = r.id AND (:site_ids::uuid[] IS NULL OR rs.site_id = ANY(:site_ids::uuid[]))), '{}') AS site_ids
FROM regions r
WHERE (:ids::uuid[] IS NULL OR r.id = ANY(:ids::uuid[]))
  AND (:site_ids::uuid[] IS NULL
       OR r.path && :region_ids::uuid[]
       OR r.id IN (SELECT unnest(g.path) FROM regions g WHERE g.id = ANY(:region_ids::uuid[]))
       OR r.id IN (SELECT unnest(g.path) FROM region_sites rs JOIN regions g ON g.id = rs.region_id
                   WHERE rs.site_id = ANY(:site_ids::uuid[])))
ORDER BY cardinality(r.path), r.code
LIMIT 5000;

-- name: lock_region^
SELECT id, parent_id, level, path, version FROM regions WHERE id = :id FOR UPDATE;

-- name: insert_region^
INSERT INTO regions (id, parent_id, level, code, name, path)
VALUES (:id, :parent_id, :level, :code, :name, :parent_path::uuid[] || :id::uuid)
RETURNING id;

-- name: update_region^
UPDATE regions SET
    name = coalesce(:name, name),
    code = coalesce(:code, code),
    version = version + 1,
    updated_at = now()
WHERE id = :id AND version = :version
RETURNING id;

-- name: move_region$
-- Re-root the subtree of :id under :new_parent_path (its new ancestors, itself excluded):
-- every region of the subtree keeps its path below :id. Returns how many regions moved.
WITH moved AS (
    UPDATE regions r SET
        path = :new_parent_path::uuid[] || r.path[array_position(r.path, :id::uuid):],
        parent_id = CASE WHEN r.id = :id::uuid THEN :parent_id::uuid ELSE r.parent_id END,
        version = CASE WHEN r.id = :id::uuid THEN r.version + 1 ELSE r.version END,
        updated_at = CASE WHEN r.id = :id::uuid THEN now() ELSE r.updated_at END
    WHERE :id::uuid = ANY(r.path)
    RETURNING r.id
)
SELECT count(*)::int FROM moved;

-- name: subtree_depth$
-- How many levels the subtree of :id spans below it (0: a leaf).
SELECT coalesce(max(cardinality(r.path) - array_position(r.path, :id::uuid)), 0)::int
FROM regions r WHERE :id::uuid = ANY(r.path);

-- name: place_site^
INSERT INTO region_sites (site_id, region_id) VALUES (:site_id, :region_id)
ON CONFLICT (site_id) DO UPDATE SET region_id = excluded.region_id,
    placed_at = CASE WHEN region_sites.region_id = excluded.region_id THEN region_sites.placed_at ELSE now() END
RETURNING site_id, region_id, placed_at;

-- name: subtree_sites
-- The sites placed anywhere under the given regions.
SELECT DISTINCT rs.site_id FROM region_sites rs JOIN regions r ON r.id = rs.region_id
WHERE r.path && :region_ids::uuid[]
ORDER BY rs.site_id;

-- name: scope_sites
-- The sites a roll-up covers: in the caller's scope and, given :region_id, under it. One row
-- per site with its region and the child of :region_id it falls under (NULL: placed in
-- :region_id itself, or in no region); with no :region_id, the top-level region it is under.
SELECT s.id AS site_id, s.code, s.name, s.time_zone, rs.region_id,
       CASE WHEN :region_id::uuid IS NULL THEN r.path[1]
            ELSE r.path[array_position(r.path, :region_id::uuid) + 1] END AS child_id
FROM sites s
LEFT JOIN region_sites rs ON rs.site_id = s.id
LEFT JOIN regions r ON r.id = rs.region_id
WHERE (:site_ids::uuid[] IS NULL OR s.id = ANY(:site_ids::uuid[]))
  AND (:region_id::uuid IS NULL OR :region_id::uuid = ANY(r.path))
ORDER BY s.code
LIMIT 2000;

-- name: live_figures
-- The live figures of each site: beds, open alerts, transfers in flight, stock. Per-kind
-- counts come back as jsonb objects (key -> count).
WITH beds AS (
    SELECT site_id,
           sum(beds)::int AS capacity,
           sum(occupied)::int AS occupied,
           sum(beds - occupied) FILTER (WHERE status IN ('ready', 'occupied'))::int AS free,
           sum(beds - occupied) FILTER (WHERE status NOT IN ('ready', 'occupied'))::int AS unavailable
    FROM rooms WHERE site_id = ANY(:site_ids::uuid[]) GROUP BY site_id
),
cats AS (
    SELECT site_id, jsonb_object_agg(category, n) AS by_category
    FROM (SELECT site_id, category, count(*)::int AS n FROM stays
          WHERE status = 'active' AND site_id = ANY(:site_ids::uuid[]) GROUP BY site_id, category) c
    GROUP BY site_id
),
alerts AS (
    SELECT site_id, sum(n)::int AS open, jsonb_object_agg(kind, n) AS by_kind
    FROM (SELECT site_id, kind, count(*)::int AS n FROM alerts
          WHERE state IN ('open', 'acknowledged') AND site_id = ANY(:site_ids::uuid[]) GROUP BY site_id, kind) a
    GROUP BY site_id
),
transfers AS (
    SELECT site_id, sum(n)::int AS in_flight, jsonb_object_agg(state, n) AS by_state
    FROM (SELECT site_id, state, count(*)::int AS n FROM transfers
          WHERE state IN ('requested', 'approved', 'dispatched', 'departed') AND site_id = ANY(:site_ids::uuid[])
          GROUP BY site_id, state) t
    GROUP BY site_id
),
stock AS (
    SELECT site_id, count(*) FILTER (WHERE low)::int AS low_items, min(days_of_cover) AS min_cover
    FROM (SELECT st.site_id, st.low,
                 CASE WHEN u.issued > 0 THEN round((st.quantity / (u.issued / 7.0))::numeric, 1)::float8 END AS days_of_cover
          FROM supply_stock st
          LEFT JOIN LATERAL (SELECT -sum(m.delta) AS issued FROM supply_movements m
                             WHERE m.site_id = st.site_id AND m.item_id = st.item_id AND m.kind = 'issue'
                               AND m.created_at >= :now::timestamptz - interval '7 days') u ON true
          WHERE st.site_id = ANY(:site_ids::uuid[])) x
    GROUP BY site_id
)
SELECT s.id AS site_id,
       coalesce(b.capacity, 0) AS capacity_beds, coalesce(b.occupied, 0) AS occupied_beds,
       coalesce(b.free, 0) AS free_beds, coalesce(b.unavailable, 0) AS unavailable_beds,
       coalesce(c.by_category, '{}') AS occupied_by_category,
       coalesce(a.open, 0) AS open_alerts, coalesce(a.by_kind, '{}') AS open_alerts_by_kind,
       coalesce(t.in_flight, 0) AS transfers_in_flight, coalesce(t.by_state, '{}') AS transfers_by_state,
       coalesce(k.low_items, 0) AS low_stock_items, k.min_cover AS min_days_of_cover
FROM unnest(:site_ids::uuid[]) AS s(id)
LEFT JOIN beds b ON b.site_id = s.id
LEFT JOIN cats c ON c.site_id = s.id
LEFT JOIN alerts a ON a.site_id = s.id
LEFT JOIN transfers t ON t.site_id = s.id
LEFT JOIN stock k ON k.site_id = s.id;

-- name: low_stock
-- The low items of these sites, shortest cover first.
SELECT st.site_id, st.item_id, i.sku, i.name, i.unit, st.quantity, st.reorder_level,
       CASE WHEN u.issued > 0 THEN round((st.quantity / (u.issued / 7.0))::numeric, 1)::float8 END AS days_of_cover
FROM supply_stock st
JOIN supply_items i ON i.id = st.item_id
LEFT JOIN LATERAL (SELECT -sum(m.delta) AS issued FROM supply_movements m
                   WHERE m.site_id = st.site_id AND m.item_id = st.item_id AND m.kind = 'issue'
                     AND m.created_at >= :now::timestamptz - interval '7 days') u ON true
WHERE st.site_id = ANY(:site_ids::uuid[]) AND st.low
ORDER BY days_of_cover NULLS LAST, st.quantity, i.sku
LIMIT :limit;

-- name: turnaround
-- Tubes resulted since :since, collected -> resulted in hours, per group: :groups[i] is the
-- group of :sites[i] (a site may be in several groups: its own, its region's, the total).
SELECT g.grp, count(*)::int AS results,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY h))::numeric, 2)::float8 AS median_h,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY h))::numeric, 2)::float8 AS p90_h
FROM unnest(:sites::uuid[], :groups::text[]) AS g(site_id, grp)
JOIN LATERAL (SELECT extract(epoch FROM sm.resulted_at - sm.collected_at) / 3600.0 AS h
              FROM samples sm
              WHERE sm.site_id = g.site_id AND sm.resulted_at >= :since::timestamptz AND sm.resulted_at <= :now::timestamptz
                AND sm.barcode IS NOT NULL AND sm.result IN ('negative', 'positive', 'invalid')) t ON true
GROUP BY g.grp;

-- name: day_figures
-- Each site's figures for each local day from :first_day to :last_day, from the ledgers.
-- A day ends at the site's next local midnight or at :now, whichever comes first (today so
-- far). Check-in slots (checkins_per_day a day) and test days count as due once begun.
WITH site_day AS (
    SELECT s.id AS site_id, s.time_zone, d::date AS day,
           (d::date::timestamp AT TIME ZONE s.time_zone) AS day_start,
           least(((d::date + 1)::timestamp AT TIME ZONE s.time_zone), :now::timestamptz) AS day_end
    FROM sites s CROSS JOIN generate_series(:first_day::date, :last_day::date, interval '1 day') AS d
    WHERE s.id = ANY(:site_ids::uuid[])
),
sd AS (SELECT * FROM site_day WHERE day_start < day_end),
-- The stays present during each site-day: the active ones admitted before its end, and the closed
-- ones that ended after its start, each found through its own index (a site's closed history is
-- never scanned whole).
present AS (
    SELECT sd.site_id, sd.day, st.id
    FROM sd JOIN stays st ON st.site_id = sd.site_id AND st.status = 'active' AND st.admitted_at < sd.day_end
    UNION ALL
    SELECT sd.site_id, sd.day, x.id
    FROM sd CROSS JOIN LATERAL (SELECT st.id FROM stays st
                                WHERE st.site_id = sd.site_id AND st.ended_at >= sd.day_start AND st.admitted_at < sd.day_end
                                OFFSET 0) x
),
stay_day AS (
    SELECT sd.site_id, sd.day, sd.day_start, sd.day_end, st.id AS stay_id, st.admitted_at, st.ended_at,
           st.outcome, st.moved_from, st.day_one, r.checkins_per_day AS cpd, r.test_days
    FROM present p
    JOIN sd ON sd.site_id = p.site_id AND sd.day = p.day
    JOIN stays st ON st.id = p.id
    JOIN regimes r ON r.id = st.regime_id
),
stay_counts AS (
    SELECT site_id, day,
           count(*) FILTER (WHERE ended_at IS NULL OR ended_at >= day_end)::int AS in_quarantine,
           count(*) FILTER (WHERE admitted_at >= day_start AND moved_from IS NULL)::int AS admitted,
           count(*) FILTER (WHERE ended_at < day_end AND outcome = 'released')::int AS released,
           count(*) FILTER (WHERE ended_at < day_end AND outcome = 'transferred')::int AS transferred
    FROM stay_day GROUP BY site_id, day
),
slots AS (
    SELECT sd.site_id, sd.day, sd.stay_id, sd.cpd,
           sd.day_start + (interval '1 day' / sd.cpd) * k AS slot_start
    FROM stay_day sd CROSS JOIN LATERAL generate_series(0, sd.cpd - 1) AS k
    WHERE sd.cpd > 0
),
checkin_counts AS (
    SELECT sl.site_id, sl.day, count(*)::int AS due,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM checkins c WHERE c.stay_id = sl.stay_id
                                          AND c.recorded_at >= sl.slot_start
                                          AND c.recorded_at < sl.slot_start + interval '1 day' / sl.cpd))::int AS done
    FROM slots sl JOIN stay_day sd ON sd.stay_id = sl.stay_id AND sd.day = sl.day
    WHERE sl.slot_start >= sd.admitted_at AND sl.slot_start < sd.day_end
      AND (sd.ended_at IS NULL OR sl.slot_start < sd.ended_at)
    GROUP BY sl.site_id, sl.day
),
swab_counts AS (
    SELECT sd.site_id, sd.day, count(*)::int AS due,
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM samples sm WHERE sm.stay_id = sd.stay_id
                                          AND sm.scheduled_day = sd.day - sd.day_one + 1
                                          AND sm.result <> 'invalid' AND sm.collected_at < sd.day_end))::int AS done
    FROM stay_day sd
    WHERE (sd.day - sd.day_one + 1) = ANY(sd.test_days)
      AND (sd.ended_at IS NULL OR sd.ended_at >= sd.day_end)
    GROUP BY sd.site_id, sd.day
),
-- Per site-day, through LATERAL so that each is one index range scan (a join on the site alone
-- would read the site's whole ledger); OFFSET 0 keeps the planner from flattening it into one.
lab AS (
    SELECT sd.site_id, sd.day,
           count(DISTINCT x.stay_id) FILTER (WHERE x.result = 'positive' AND x.stay_id IS NOT NULL)::int AS positives,
           coalesce(array_agg(round((extract(epoch FROM x.resulted_at - x.collected_at) / 60.0)::numeric, 1)::real
                              ORDER BY x.resulted_at - x.collected_at)
                    FILTER (WHERE x.barcode IS NOT NULL AND x.result IN ('negative', 'positive', 'invalid')), '{}') AS minutes
    FROM sd CROSS JOIN LATERAL (SELECT sm.stay_id, sm.result, sm.barcode, sm.collected_at, sm.resulted_at FROM samples sm
                                WHERE sm.site_id = sd.site_id AND sm.resulted_at >= sd.day_start AND sm.resulted_at < sd.day_end
                                OFFSET 0) x
    GROUP BY sd.site_id, sd.day
),
reviews AS (
    SELECT sd.site_id, sd.day, x.n
    FROM sd CROSS JOIN LATERAL (SELECT count(*)::int AS n FROM exposure_reviews er
                                WHERE er.site_id = sd.site_id AND er.state IN ('open', 'confirmed', 'dismissed')
                                  AND er.opened_at >= sd.day_start AND er.opened_at < sd.day_end) x
),
missed AS (
    SELECT sd.site_id, sd.day, x.n
    FROM sd CROSS JOIN LATERAL (SELECT count(*)::int AS n FROM alerts a
                                WHERE a.site_id = sd.site_id AND a.raised_at >= sd.day_start AND a.raised_at < sd.day_end
                                  AND a.kind = 'missed_checkin') x
),
-- Stock at the day's end: each item's quantity after its last movement before then, against
-- today's reorder level (levels have no history).
low AS (
    SELECT sd.site_id, sd.day, count(*)::int AS n
    FROM sd
    JOIN supply_stock st ON st.site_id = sd.site_id
    JOIN LATERAL (SELECT m.quantity_after FROM supply_movements m
                  WHERE m.site_id = st.site_id AND m.item_id = st.item_id AND m.created_at < sd.day_end
                  ORDER BY m.created_at DESC, m.generation DESC NULLS LAST LIMIT 1) q ON true
    WHERE q.quantity_after < st.reorder_level
    GROUP BY sd.site_id, sd.day
)
SELECT sd.site_id, sd.day,
       coalesce(sc.in_quarantine, 0) AS in_quarantine, coalesce(sc.admitted, 0) AS admitted,
       coalesce(sc.released, 0) AS released, coalesce(sc.transferred, 0) AS transferred,
       coalesce(lb.positives, 0) AS positives, coalesce(rv.n, 0) AS exposure_reviews, coalesce(mi.n, 0) AS missed_checkins,
       coalesce(cc.done, 0) AS checkins_done, coalesce(cc.due, 0) AS checkins_due,
       coalesce(sw.done, 0) AS swabs_done, coalesce(sw.due, 0) AS swabs_due,
       coalesce(lb.minutes, '{}') AS turnaround_minutes, coalesce(lo.n, 0) AS low_stock_items
FROM sd
LEFT JOIN stay_counts sc ON sc.site_id = sd.site_id AND sc.day = sd.day
LEFT JOIN checkin_counts cc ON cc.site_id = sd.site_id AND cc.day = sd.day
LEFT JOIN swab_counts sw ON sw.site_id = sd.site_id AND sw.day = sd.day
LEFT JOIN lab lb ON lb.site_id = sd.site_id AND lb.day = sd.day
LEFT JOIN reviews rv ON rv.site_id = sd.site_id AND rv.day = sd.day
LEFT JOIN missed mi ON mi.site_id = sd.site_id AND mi.day = sd.day
LEFT JOIN low lo ON lo.site_id = sd.site_id AND lo.day = sd.day
ORDER BY sd.site_id, sd.day;

-- name: upsert_site_daily*!
INSERT INTO site_daily (site_id, day, in_quarantine, admitted, released, transferred, positives, exposure_reviews,
                        missed_checkins, checkins_done, checkins_due, swabs_done, swabs_due, turnaround_minutes,
                        low_stock_items)
VALUES (:site_id, :day, :in_quarantine, :admitted, :released, :transferred, :positives, :exposure_reviews,
        :missed_checkins, :checkins_done, :checkins_due, :swabs_done, :swabs_due, :turnaround_minutes, :low_stock_items)
ON CONFLICT (site_id, day) DO UPDATE SET
    in_quarantine = excluded.in_quarantine, admitted = excluded.admitted, released = excluded.released,
    transferred = excluded.transferred, positives = excluded.positives, exposure_reviews = excluded.exposure_reviews,
    missed_checkins = excluded.missed_checkins, checkins_done = excluded.checkins_done,
    checkins_due = excluded.checkins_due, swabs_done = excluded.swabs_done, swabs_due = excluded.swabs_due,
    turnaround_minutes = excluded.turnaround_minutes, low_stock_items = excluded.low_stock_items,
    computed_at = now();

-- name: due_snapshots
-- Site-days that have ended (the site's local midnight has passed) since :first_day and have
-- no snapshot yet: what the daily job writes.
SELECT s.id AS site_id, d::date AS day
FROM sites s CROSS JOIN generate_series(:first_day::date, (:now::timestamptz AT TIME ZONE 'UTC')::date, interval '1 day') AS d
WHERE s.status <> 'closed'
  AND ((d::date + 1)::timestamp AT TIME ZONE s.time_zone) <= :now::timestamptz
  AND NOT EXISTS (SELECT 1 FROM site_daily sd WHERE sd.site_id = s.id AND sd.day = d::date)
ORDER BY d, s.id
LIMIT :limit;

-- name: series
-- Snapshots summed per day over :site_ids, :first_day to :last_day (turnaround: every tube).
SELECT sd.day, count(*)::int AS sites,
       sum(in_quarantine)::int AS in_quarantine, sum(admitted)::int AS admitted, sum(released)::int AS released,
       sum(transferred)::int AS transferred, sum(positives)::int AS positives,
       sum(exposure_reviews)::int AS exposure_reviews, sum(missed_checkins)::int AS missed_checkins,
       sum(checkins_done)::int AS checkins_done, sum(checkins_due)::int AS checkins_due,
       sum(swabs_done)::int AS swabs_done, sum(swabs_due)::int AS swabs_due,
       sum(cardinality(turnaround_minutes))::int AS results,
       (SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY m) / 60.0)::numeric, 2)::float8
        FROM site_daily x, unnest(x.turnaround_minutes) m
        WHERE x.day = sd.day AND x.site_id = ANY(:site_ids::uuid[])) AS turnaround_median_h,
       (SELECT round((percentile_cont(0.9) WITHIN GROUP (ORDER BY m) / 60.0)::numeric, 2)::float8
        FROM site_daily x, unnest(x.turnaround_minutes) m
        WHERE x.day = sd.day AND x.site_id = ANY(:site_ids::uuid[])) AS turnaround_p90_h,
       sum(low_stock_items)::int AS low_stock_items
FROM site_daily sd
WHERE sd.site_id = ANY(:site_ids::uuid[]) AND sd.day BETWEEN :first_day::date AND :last_day::date
GROUP BY sd.day
ORDER BY sd.day;

-- name: site_days
-- One day's snapshot of each of :site_ids (the rows of a daily report).
SELECT site_id, day, in_quarantine, admitted, released, transferred, positives, exposure_reviews, missed_checkins,
       checkins_done, checkins_due, swabs_done, swabs_due, turnaround_minutes, low_stock_items
FROM site_daily
WHERE site_id = ANY(:site_ids::uuid[]) AND day = :day::date;
