-- Regions as data: the command chain's tree (city -> district -> street/township), the sites
-- placed in it, staff accounts scoped to a subtree, and per-site daily snapshots.
--
-- A region keeps its ancestry in ``path`` (root first, itself last) so that "every region under
-- X" is one indexed ``X = ANY(path)`` and moving a subtree is one UPDATE of the moved rows.

CREATE TABLE regions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_id   uuid REFERENCES regions (id),
    level       text NOT NULL CHECK (level IN ('city', 'district', 'street')),
    code        text NOT NULL CHECK (code ~ '^[A-Za-z0-9_-]{2,32}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    path        uuid[] NOT NULL CHECK (cardinality(path) BETWEEN 1 AND 3 AND path[cardinality(path)] = id),
    version     int NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT regions_not_own_parent CHECK (parent_id IS DISTINCT FROM id)
);
CREATE UNIQUE INDEX regions_code_key ON regions (code);
-- Sibling names are unique (the roots' among themselves): a path of names names one region.
CREATE UNIQUE INDEX regions_sibling_name_key ON regions (coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), name);
CREATE INDEX regions_path_idx ON regions USING gin (path);
CREATE INDEX regions_parent_idx ON regions (parent_id);

-- Which region a site belongs to (at most one). Owned by the regions domain, so the sites
-- domain's table stays as it was; ``sites.region_path`` remains as the free-text label.
CREATE TABLE region_sites (
    site_id    uuid PRIMARY KEY REFERENCES sites (id),
    region_id  uuid NOT NULL REFERENCES regions (id),
    placed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX region_sites_region_idx ON region_sites (region_id);

-- Staff scoped to region subtrees: their sites are these regions' sites (plus staff_sites),
-- expanded when a token is issued (service/access/service.py).
CREATE TABLE staff_regions (
    staff_id   uuid NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    region_id  uuid NOT NULL REFERENCES regions (id),
    PRIMARY KEY (staff_id, region_id)
);
CREATE INDEX staff_regions_region_idx ON staff_regions (region_id);

-- One row per site and local day, written after the site's midnight by the daily_snapshots
-- job and by backfill from the ledgers (recomputing a day replaces its row).
-- turnaround_minutes holds every tube resulted that day (collected -> resulted), so that
-- percentiles over any set of sites and days are exact rather than averages of medians.
CREATE TABLE site_daily (
    site_id             uuid NOT NULL REFERENCES sites (id),
    day                 date NOT NULL,
    in_quarantine       int NOT NULL CHECK (in_quarantine >= 0),
    admitted            int NOT NULL CHECK (admitted >= 0),
    released            int NOT NULL CHECK (released >= 0),
    transferred         int NOT NULL CHECK (transferred >= 0),
    positives           int NOT NULL CHECK (positives >= 0),
    exposure_reviews    int NOT NULL CHECK (exposure_reviews >= 0),
    missed_checkins     int NOT NULL CHECK (missed_checkins >= 0),
    checkins_done       int NOT NULL CHECK (checkins_done >= 0),
    checkins_due        int NOT NULL CHECK (checkins_due >= checkins_done),
    swabs_done          int NOT NULL CHECK (swabs_done >= 0),
    swabs_due           int NOT NULL CHECK (swabs_due >= swabs_done),
    turnaround_minutes  real[] NOT NULL DEFAULT '{}',
    low_stock_items     int NOT NULL CHECK (low_stock_items >= 0),
    computed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, day)
);
CREATE INDEX site_daily_day_idx ON site_daily (day);

-- Migrate the free-text region paths ('两江新区/礼嘉街道') into the tree. A segment's level comes
-- from its suffix (市: city, 区/县: district, otherwise street) but always lies below its
-- parent's; segments past the third join the street's name. Codes are derived from the path.
DO $$
DECLARE
    s record;
    seg text;
    segs text[];
    parent uuid;
    parent_path uuid[];
    parent_rank int;
    rank int;
    node uuid;
    prefix text;
BEGIN
    FOR s IN SELECT id, region_path FROM sites WHERE btrim(region_path) <> '' ORDER BY code LOOP
        segs := ARRAY(SELECT btrim(x) FROM unnest(string_to_array(s.region_path, '/')) AS x WHERE btrim(x) <> '');
        IF cardinality(segs) = 0 THEN
            CONTINUE;
        END IF;
        parent := NULL;
        parent_path := '{}';
        parent_rank := -1;
        prefix := '';
        FOR i IN 1 .. cardinality(segs) LOOP
            seg := segs[i];
            rank := CASE WHEN seg LIKE '%市' THEN 0 WHEN seg LIKE '%区' OR seg LIKE '%县' THEN 1 ELSE 2 END;
            rank := greatest(rank, parent_rank + 1);
            IF rank >= 2 THEN  -- the street: it takes the rest of the path
                rank := 2;
                seg := array_to_string(segs[i:], '/');
            END IF;
            seg := left(seg, 200);
            prefix := prefix || '/' || seg;
            SELECT r.id INTO node FROM regions r
             WHERE r.parent_id IS NOT DISTINCT FROM parent AND r.name = seg;
            IF node IS NULL THEN
                node := gen_random_uuid();
                INSERT INTO regions (id, parent_id, level, code, name, path)
                VALUES (node, parent, (ARRAY['city', 'district', 'street'])[rank + 1],
                        'R-' || left(md5(prefix), 12), seg, parent_path || node);
            END IF;
            parent := node;
            parent_path := parent_path || node;
            parent_rank := rank;
            node := NULL;
            EXIT WHEN rank = 2;
        END LOOP;
        INSERT INTO region_sites (site_id, region_id) VALUES (s.id, parent);
    END LOOP;
END $$;

-- What the snapshots read by site and day besides admissions (stays_site_admitted_idx).
CREATE INDEX stays_site_ended_idx ON stays (site_id, ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX samples_site_resulted_idx ON samples (site_id, resulted_at) WHERE resulted_at IS NOT NULL;
