-- A site's stays newest first (the Stays screen without a status filter): closed stays pile up,
-- and without this the first page read every stay the site ever had (bench scale's plan audit).
CREATE INDEX stays_site_admitted_idx ON stays (site_id, admitted_at DESC, id DESC);
