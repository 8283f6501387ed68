-- The change feed (service/bus.py read_events) bounded by what it returns (issues 14 and 18).
--
-- The feed reads in commit order, (txid, id). A site's events, or one type's, are read in that
-- order from an index that leads with the filter, one index range per site and/or type, each
-- stopped by the page's LIMIT: a filter that matches few events no longer walks every event
-- after the cursor. (site_id, id) was ordered by id, which is not commit order: replaced.
DROP INDEX events_site_idx;
CREATE INDEX events_site_feed_idx ON events (site_id, txid, id);
CREATE INDEX events_site_type_feed_idx ON events (site_id, type, txid, id);
CREATE INDEX events_type_feed_idx ON events (type, txid, id);
-- The events of no site (regimes, facilities, the catalogue) by type, for callers scoped to sites.
CREATE INDEX events_global_feed_idx ON events (type, txid, id) WHERE site_id IS NULL;
