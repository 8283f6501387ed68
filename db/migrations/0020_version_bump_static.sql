-- Site data versions: the statement-level trigger of every per-site table (column site_id) reads
-- its transition table with static SQL. 0008's EXECUTE format(...) parsed and planned that
-- query again on every writing statement; a static one is planned once per table and session.
-- That was about a third of a single check-in's time in PostgreSQL. The tables of data every
-- site shares (the nil site, TG_ARGV[1] = '') keep the dynamic form: they are written rarely.
CREATE OR REPLACE FUNCTION site_versions_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    site text;
    sites uuid[];
BEGIN
    IF TG_ARGV[1] = 'site_id' THEN
        -- Each branch names only the transition tables its operation has.
        IF TG_OP = 'INSERT' THEN
            SELECT array_agg(DISTINCT n.site_id) INTO sites FROM new_rows AS n;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT array_agg(DISTINCT o.site_id) INTO sites FROM old_rows AS o;
        ELSE
            SELECT array_agg(DISTINCT b.s) INTO sites FROM (SELECT n.site_id AS s FROM new_rows AS n UNION SELECT o.site_id FROM old_rows AS o) AS b;
        END IF;
    ELSE
        site := CASE WHEN TG_ARGV[1] = '' THEN '''00000000-0000-0000-0000-000000000000''::uuid' ELSE quote_ident(TG_ARGV[1]) END;
        IF TG_OP = 'INSERT' THEN
            EXECUTE format('SELECT array_agg(DISTINCT %s) FROM new_rows', site) INTO sites;
        ELSIF TG_OP = 'DELETE' THEN
            EXECUTE format('SELECT array_agg(DISTINCT %s) FROM old_rows', site) INTO sites;
        ELSE
            EXECUTE format('SELECT array_agg(DISTINCT s) FROM (SELECT %1$s AS s FROM new_rows UNION SELECT %1$s FROM old_rows) AS b', site)
                INTO sites;
        END IF;
    END IF;
    IF sites IS NOT NULL THEN  -- NULL: the statement changed no row
        PERFORM bump_site_versions(sites, TG_ARGV[0]);
    END IF;
    RETURN NULL;
END $$;
