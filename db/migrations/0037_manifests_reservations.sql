-- Arrival manifests and bed reservations (issue 16).
--
-- A manifest announces an inbound vehicle with the referrals on board; announcing it reserves a bed
-- for each of them with the admission allocation rules (service/stays). Reservations expire, are
-- consumed when the person is admitted and released for a no-show or a cancelled manifest.
--
-- Invariants: a bed is held by at most one reservation (bed_reservations_held_key); a person holds
-- at most one (bed_reservations_holder_key); a room never holds more people and reservations than
-- beds, nor a reservation on a bed an active stay holds: reservations and admissions take beds only
-- under the rooms' row locks (stays.lock_rooms_for_admission), in one order.

CREATE TABLE bed_reservations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id         uuid NOT NULL REFERENCES sites (id),
    room_id         uuid NOT NULL REFERENCES rooms (id),
    bed             int NOT NULL CHECK (bed BETWEEN 1 AND 20),
    -- What holds it (a manifest) and for whom (a referral): ids of the intake domain.
    holder_id       uuid NOT NULL,
    subject_id      uuid NOT NULL,
    -- The allocation rules keep households together and floors to one category and batch.
    household_key   text,
    category        text NOT NULL,
    arrival_batch   text NOT NULL DEFAULT '',
    state           text NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'consumed', 'released', 'expired')),
    expires_at      timestamptz NOT NULL,
    stay_id         uuid REFERENCES stays (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    CONSTRAINT bed_reservations_consumed_stay CHECK ((state = 'consumed') = (stay_id IS NOT NULL)),
    CONSTRAINT bed_reservations_ended CHECK ((state = 'held') = (ended_at IS NULL))
);
CREATE UNIQUE INDEX bed_reservations_held_key ON bed_reservations (room_id, bed) WHERE state = 'held';
CREATE UNIQUE INDEX bed_reservations_holder_key ON bed_reservations (subject_id) WHERE state = 'held';
CREATE INDEX bed_reservations_site_idx ON bed_reservations (site_id, expires_at) WHERE state = 'held';
CREATE INDEX bed_reservations_holder_idx ON bed_reservations (holder_id);

-- Inbound vehicles (转运车辆) announced before they arrive.
CREATE TABLE arrival_manifests (
    id             uuid PRIMARY KEY,
    site_id        uuid NOT NULL REFERENCES sites (id),
    vehicle_plate  text NOT NULL CHECK (length(vehicle_plate) BETWEEN 1 AND 20),
    vehicle_kind   text NOT NULL CHECK (vehicle_kind IN ('bus', 'van', 'car', 'ambulance', 'other')),
    escort         text NOT NULL DEFAULT '' CHECK (length(escort) <= 200),
    expected_at    timestamptz NOT NULL,
    hold_until     timestamptz NOT NULL,
    state          text NOT NULL DEFAULT 'announced' CHECK (state IN ('announced', 'arrived', 'cancelled')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL,
    closed_at      timestamptz,
    closed_by      text,
    version        int NOT NULL DEFAULT 1,
    CHECK (hold_until > expected_at)
);
CREATE INDEX arrival_manifests_site_idx ON arrival_manifests (site_id, expected_at, id);

CREATE TABLE manifest_members (
    manifest_id     uuid NOT NULL REFERENCES arrival_manifests (id),
    referral_id     uuid NOT NULL REFERENCES referrals (id),
    site_id         uuid NOT NULL REFERENCES sites (id),
    position        int NOT NULL,
    state           text NOT NULL DEFAULT 'expected' CHECK (state IN ('expected', 'arrived', 'no_show', 'cancelled')),
    reservation_id  uuid REFERENCES bed_reservations (id),
    stay_id         uuid REFERENCES stays (id),
    PRIMARY KEY (manifest_id, referral_id)
);
-- A referral rides one announced vehicle at a time.
CREATE UNIQUE INDEX manifest_members_expected_key ON manifest_members (referral_id) WHERE state = 'expected';

-- Reserved beds show on the room board (a compiled, cached read): they move the rooms topic.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['bed_reservations'] LOOP
        EXECUTE format('CREATE TRIGGER %1$s_version_ins AFTER INSERT ON %1$I REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION site_versions_bump(%2$L, %3$L)', t, 'rooms', 'site_id');
        EXECUTE format('CREATE TRIGGER %1$s_version_upd AFTER UPDATE ON %1$I REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION site_versions_bump(%2$L, %3$L)', t, 'rooms', 'site_id');
        EXECUTE format('CREATE TRIGGER %1$s_version_del AFTER DELETE ON %1$I REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION site_versions_bump(%2$L, %3$L)', t, 'rooms', 'site_id');
    END LOOP;
END $$;
