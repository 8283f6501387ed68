-- Lists and lookups bounded by what they return, not by history (issue 18).

-- A site's alerts in every state, newest first: alerts_site_idx leads with state, so an unfiltered
-- list read and sorted every alert the site ever raised.
CREATE INDEX alerts_site_raised_idx ON alerts (site_id, raised_at DESC, id DESC);

-- Lookup by blind index alone (the unique key leads with document_type, which the search does not give).
CREATE INDEX residents_document_index_idx ON residents (document_index);

-- The latest disinfection task of a room: one probe per room instead of all its tasks.
CREATE INDEX disinfection_tasks_room_latest_idx ON disinfection_tasks (room_id, opened_at DESC, id);
