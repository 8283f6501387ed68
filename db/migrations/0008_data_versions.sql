-- Site data versions: one counter per (site, topic), bumped by triggers in the writing
-- transaction, so no write path can forget it. Cached reads are keyed by these versions
-- (service/versions.py, service/readpath.py) and the logistics poll's ETag is derived from them.
--
-- Topics: rooms (rooms, turnover, residents, stays), health (check-ins, samples, alerts,
-- reviews), transfers, stock. Data shared by every site (sites, regimes, facilities, supply
-- items) bumps the 'catalog' topic of the nil site, which every cached read includes.
--
-- Each bump also NOTIFYs qsite_versions with 'site:topic:version'. PostgreSQL delivers it
-- at commit and only on commit, to every instance listening: the instances' in-memory
-- copies learn of a change without any publish that could fail after the commit.

CREATE TABLE site_data_versions (
    site_id  uuid NOT NULL,
    topic    text NOT NULL CHECK (topic IN ('rooms', 'health', 'transfers', 'stock', 'catalog')),
    version  bigint NOT NULL,
    PRIMARY KEY (site_id, topic)
);

-- Bump (site, topic) for each site in ``site_ids``; sites in id order so that concurrent
-- multi-site writers take the row locks in one order.
CREATE FUNCTION bump_site_versions(site_ids uuid[], bumped_topic text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    b record;
BEGIN
    FOR b IN
        INSERT INTO site_data_versions AS v (site_id, topic, version)
        SELECT s, bumped_topic, 1 FROM (SELECT DISTINCT unnest(site_ids) AS s) AS distinct_sites ORDER BY s
        ON CONFLICT (site_id, topic) DO UPDATE SET version = v.version + 1
        RETURNING v.site_id, v.topic, v.version
    LOOP
        PERFORM pg_notify('qsite_versions', b.site_id::text || ':' || b.topic || ':' || b.version);
    END LOOP;
END $$;

-- Statement-level: a batch of 500 check-ins bumps its site once, not 500 times.
-- TG_ARGV[0] = topic, TG_ARGV[1] = the column naming the site ('' = the nil site).
CREATE FUNCTION site_versions_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    site text := CASE WHEN TG_ARGV[1] = '' THEN '''00000000-0000-0000-0000-000000000000''::uuid' ELSE quote_ident(TG_ARGV[1]) END;
    sites uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('SELECT array_agg(DISTINCT %s) FROM new_rows', site) INTO sites;
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('SELECT array_agg(DISTINCT %s) FROM old_rows', site) INTO sites;
    ELSE
        EXECUTE format('SELECT array_agg(DISTINCT s) FROM (SELECT %1$s AS s FROM new_rows UNION SELECT %1$s FROM old_rows) AS b', site)
            INTO sites;
    END IF;
    IF sites IS NOT NULL THEN  -- NULL: the statement changed no row
        PERFORM bump_site_versions(sites, TG_ARGV[0]);
    END IF;
    RETURN NULL;
END $$;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('rooms', 'rooms', 'site_id'), ('room_status_changes', 'rooms', 'site_id'), ('disinfection_tasks', 'rooms', 'site_id'),
        ('residents', 'rooms', 'site_id'), ('stays', 'rooms', 'site_id'),
        ('checkins', 'health', 'site_id'), ('samples', 'health', 'site_id'), ('retests', 'health', 'site_id'),
        ('alerts', 'health', 'site_id'), ('exposure_reviews', 'health', 'site_id'),
        ('transfers', 'transfers', 'site_id'), ('transfer_transitions', 'transfers', 'site_id'),
        ('supply_stock', 'stock', 'site_id'), ('supply_movements', 'stock', 'site_id'), ('supply_replenishments', 'stock', 'site_id'),
        ('sites', 'catalog', ''), ('regimes', 'catalog', ''), ('facilities', 'catalog', ''), ('supply_items', 'catalog', '')
    ) AS v(tbl, topic, col)
    LOOP
        EXECUTE format('CREATE TRIGGER %1$s_version_ins AFTER INSERT ON %1$I REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION site_versions_bump(%2$L, %3$L)', t.tbl, t.topic, t.col);
        EXECUTE format('CREATE TRIGGER %1$s_version_upd AFTER UPDATE ON %1$I REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION site_versions_bump(%2$L, %3$L)', t.tbl, t.topic, t.col);
        EXECUTE format('CREATE TRIGGER %1$s_version_del AFTER DELETE ON %1$I REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION site_versions_bump(%2$L, %3$L)', t.tbl, t.topic, t.col);
    END LOOP;
END $$;

-- GraphQL's DateTime as Strawberry writes it (Python's isoformat of a UTC instant):
-- microseconds only when not zero, always six digits, '+00:00'.
CREATE FUNCTION gql_instant(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM t)::bigint % 1000000 = 0 THEN '' ELSE to_char(t AT TIME ZONE 'UTC', '.US') END
        || '+00:00'
$$;

-- A resident's name as every response shows it: '张三' -> '张*'.
CREATE FUNCTION gql_masked_name(name text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT left(name, 1) || repeat('*', greatest(1, char_length(name) - 1))
$$;
