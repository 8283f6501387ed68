-- Snapshots read each stock item's last movement before a day's end (regions.sql day_figures):
-- one index probe per item rather than a walk back through the site's whole ledger.
CREATE INDEX supply_movements_item_time_idx ON supply_movements (site_id, item_id, created_at);
