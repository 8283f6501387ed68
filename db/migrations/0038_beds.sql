-- Beds as entities (issue 16): each bed of a room is a row with its attributes, so that allocation can
-- honour a person's needs (step-free access, a cot beside a parent, oxygen). A room's beds are numbered
-- 1..rooms.beds; rooms made or enlarged later get theirs from the triggers below, so the rooms code
-- (service/sites) needs no change. A bed's occupancy history is its stays: stays (room_id, bed).

CREATE TABLE beds (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id     uuid NOT NULL REFERENCES sites (id),
    room_id     uuid NOT NULL REFERENCES rooms (id),
    number      int NOT NULL CHECK (number BETWEEN 1 AND 20),
    accessible  boolean NOT NULL DEFAULT false,  -- step-free, for people with reduced mobility
    cot         boolean NOT NULL DEFAULT false,  -- an infant's cot beside a parent's bed
    oxygen      boolean NOT NULL DEFAULT false,  -- an oxygen supply point
    version     int NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text,
    CONSTRAINT beds_room_number_key UNIQUE (room_id, number)
);
CREATE INDEX beds_site_idx ON beds (site_id, room_id, number);

INSERT INTO beds (site_id, room_id, number)
SELECT r.site_id, r.id, n FROM rooms r CROSS JOIN LATERAL generate_series(1, r.beds) AS n;

CREATE FUNCTION rooms_make_beds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO beds (site_id, room_id, number)
    SELECT r.site_id, r.id, n FROM new_rows r CROSS JOIN LATERAL generate_series(1, r.beds) AS n
    ON CONFLICT ON CONSTRAINT beds_room_number_key DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER rooms_beds_ins AFTER INSERT ON rooms REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rooms_make_beds();
-- Row-level and only when a room gains beds: every admission updates rooms (occupied), and pays nothing here.
CREATE FUNCTION room_more_beds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO beds (site_id, room_id, number)
    SELECT NEW.site_id, NEW.id, n FROM generate_series(OLD.beds + 1, NEW.beds) AS n
    ON CONFLICT ON CONSTRAINT beds_room_number_key DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER rooms_beds_upd AFTER UPDATE OF beds ON rooms FOR EACH ROW WHEN (NEW.beds > OLD.beds)
    EXECUTE FUNCTION room_more_beds();

-- Bed attributes show with rooms: they move the rooms topic of cached reads.
CREATE TRIGGER beds_version_ins AFTER INSERT ON beds REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION site_versions_bump('rooms', 'site_id');
CREATE TRIGGER beds_version_upd AFTER UPDATE ON beds REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION site_versions_bump('rooms', 'site_id');
