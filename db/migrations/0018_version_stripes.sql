-- Site data versions in stripes: one row per (site, topic) made every write at a site queue
-- behind the one before it until its commit (the row lock of the version bump), which capped
-- concurrent single check-ins at one site. Each connection now bumps its own stripe
-- (backend pid mod 16); a (site, topic) version is the sum of its stripes, i.e. the number of
-- writing statements committed there. One connection at a time updates a stripe, so its
-- values are notified in commit order and readers can merge them with max (service/versions.py).

ALTER TABLE site_data_versions ADD COLUMN stripe smallint NOT NULL DEFAULT 0 CHECK (stripe BETWEEN 0 AND 15);
ALTER TABLE site_data_versions DROP CONSTRAINT site_data_versions_pkey;
ALTER TABLE site_data_versions ADD PRIMARY KEY (site_id, topic, stripe);
ALTER TABLE site_data_versions ALTER COLUMN stripe DROP DEFAULT;

-- NOTIFY payload: 'site:topic:stripe:version'.
CREATE OR REPLACE FUNCTION bump_site_versions(site_ids uuid[], bumped_topic text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    b record;
BEGIN
    FOR b IN
        INSERT INTO site_data_versions AS v (site_id, topic, stripe, version)
        SELECT s, bumped_topic, pg_backend_pid() % 16, 1 FROM (SELECT DISTINCT unnest(site_ids) AS s) AS distinct_sites ORDER BY s
        ON CONFLICT (site_id, topic, stripe) DO UPDATE SET version = v.version + 1
        RETURNING v.site_id, v.topic, v.stripe, v.version
    LOOP
        PERFORM pg_notify('qsite_versions', b.site_id::text || ':' || b.topic || ':' || b.stripe || ':' || b.version);
    END LOOP;
END $$;
