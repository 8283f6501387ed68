-- Rooms and their turnover (sites domain); regimes, residents and stays (stays domain).
--
-- Invariants held here rather than in Python, so that concurrent requests cannot break them:
--   * a room never holds more residents than beds: rooms.occupied is changed only under the
--     room's row lock and CHECK (occupied <= beds);
--   * a bed holds at most one active stay: stays_bed_active_key;
--   * a resident has at most one active stay: stays_resident_active_key;
--   * a room has at most one unfinished disinfection task: disinfection_tasks_open_key.

CREATE TABLE rooms (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id       uuid NOT NULL REFERENCES sites (id),
    number        text NOT NULL CHECK (number ~ '^[A-Za-z0-9-]{1,16}$'),
    floor         int NOT NULL CHECK (floor BETWEEN -5 AND 200),
    beds          int NOT NULL CHECK (beds BETWEEN 1 AND 20),
    occupied      int NOT NULL DEFAULT 0,
    notes         text NOT NULL DEFAULT '' CHECK (length(notes) <= 1000),
    status        text NOT NULL DEFAULT 'ready'
                  CHECK (status IN ('ready', 'occupied', 'vacated', 'disinfecting', 'airing', 'out_of_service', 'sealed')),
    status_since  timestamptz NOT NULL DEFAULT now(),
    status_by     text,
    status_reason text NOT NULL DEFAULT '' CHECK (length(status_reason) <= 500),
    version       int NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rooms_site_number_key UNIQUE (site_id, number),
    CONSTRAINT rooms_capacity CHECK (occupied BETWEEN 0 AND beds),
    -- Only an occupied or sealed room has residents in it.
    CONSTRAINT rooms_empty_unless_occupied CHECK (occupied = 0 OR status IN ('occupied', 'sealed'))
);
CREATE INDEX rooms_site_floor_idx ON rooms (site_id, floor, number);
CREATE INDEX rooms_site_status_idx ON rooms (site_id, status);

-- Who moved a room to which status, when and why: append-only history.
CREATE TABLE room_status_changes (
    id           bigserial PRIMARY KEY,
    room_id      uuid NOT NULL REFERENCES rooms (id),
    site_id      uuid NOT NULL REFERENCES sites (id),
    from_status  text,
    to_status    text NOT NULL,
    action       text NOT NULL,
    actor        text,
    reason       text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX room_status_changes_room_idx ON room_status_changes (room_id, id);

-- Terminal disinfection (终末消毒): opened when a room empties, then started, finished,
-- aired for the configured period and inspected. A failed inspection sends it back.
CREATE TABLE disinfection_tasks (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    room_id         uuid NOT NULL REFERENCES rooms (id),
    site_id         uuid NOT NULL REFERENCES sites (id),
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'disinfecting', 'airing', 'passed', 'cancelled')),
    opened_at       timestamptz NOT NULL DEFAULT now(),
    opened_by       text,
    started_at      timestamptz,
    started_by      text,
    finished_at     timestamptz,
    finished_by     text,
    airing_until    timestamptz,
    inspected_at    timestamptz,
    inspected_by    text,
    failed_inspections int NOT NULL DEFAULT 0,
    notes           text NOT NULL DEFAULT '' CHECK (length(notes) <= 1000)
);
CREATE UNIQUE INDEX disinfection_tasks_open_key ON disinfection_tasks (room_id) WHERE state IN ('open', 'disinfecting', 'airing');
CREATE INDEX disinfection_tasks_site_idx ON disinfection_tasks (site_id, state);

-- Quarantine regimes: policy as data. `category` marks the default regime of a category.
CREATE TABLE regimes (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code                  text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9_]{2,40}$'),
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    category              text UNIQUE
                          CHECK (category IN ('close_contact', 'secondary_contact', 'inbound_traveller', 'key_area_arrival', 'other')),
    centralized_days      int NOT NULL CHECK (centralized_days BETWEEN 0 AND 60),
    home_monitoring_days  int NOT NULL CHECK (home_monitoring_days BETWEEN 0 AND 60),
    test_days             int[] NOT NULL DEFAULT '{}'
                          CHECK (array_position(test_days, NULL) IS NULL AND 1 <= ALL (test_days) AND 90 >= ALL (test_days)),
    checkins_per_day      int NOT NULL CHECK (checkins_per_day BETWEEN 0 AND 24),
    effective_from        timestamptz NOT NULL DEFAULT now(),
    version               int NOT NULL DEFAULT 1,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- The 2022 protocols (ninth edition) as seed values; command staff change them through the API.
INSERT INTO regimes (code, name, category, centralized_days, home_monitoring_days, test_days, checkins_per_day) VALUES
    ('close_contact',      '密切接触者 7天集中隔离+3天居家健康监测',     'close_contact',     7, 3, '{1,2,3,5,7}', 2),
    ('secondary_contact',  '次密切接触者 7天集中隔离',                 'secondary_contact', 7, 0, '{1,4,7}',     2),
    ('inbound_traveller',  '入境人员 7天集中隔离+3天居家健康监测',       'inbound_traveller', 7, 3, '{1,2,3,5,7}', 2),
    ('key_area_arrival',   '高风险区来渝返渝人员 7天集中隔离',           'key_area_arrival',  7, 0, '{1,2,3,5,7}', 2);

-- Residents: ID and phone numbers only as ciphertext plus an HMAC blind index for exact lookup.
CREATE TABLE residents (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The site responsible for the resident now (follows moves between sites): the access scope.
    site_id          uuid NOT NULL REFERENCES sites (id),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    sex              text NOT NULL CHECK (sex IN ('female', 'male', 'unknown')),
    birth_date       date,
    document_type    text NOT NULL CHECK (document_type IN ('mainland_id', 'passport', 'other')),
    document_enc     text NOT NULL,
    document_index   bytea NOT NULL,
    document_tail    text NOT NULL CHECK (length(document_tail) <= 4),
    phone_enc        text,
    phone_tail       text CHECK (length(phone_tail) <= 4),
    household_key    text CHECK (length(household_key) BETWEEN 1 AND 64),
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text,
    CONSTRAINT residents_document_key UNIQUE (document_type, document_index)
);
CREATE INDEX residents_site_idx ON residents (site_id);
CREATE INDEX residents_household_idx ON residents (household_key) WHERE household_key IS NOT NULL;

CREATE TABLE stays (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    resident_id         uuid NOT NULL REFERENCES residents (id),
    site_id             uuid NOT NULL REFERENCES sites (id),
    room_id             uuid NOT NULL REFERENCES rooms (id),
    -- Copied from the room at admission (rooms are not renumbered): floor-neighbour lookups.
    room_number         text NOT NULL,
    floor               int NOT NULL,
    bed                 int NOT NULL CHECK (bed BETWEEN 1 AND 20),
    category            text NOT NULL
                        CHECK (category IN ('close_contact', 'secondary_contact', 'inbound_traveller', 'key_area_arrival', 'other')),
    origin_area         text NOT NULL DEFAULT '' CHECK (length(origin_area) <= 200),
    risk_level          text CHECK (risk_level IN ('high', 'medium', 'low')),
    arrival_batch       text NOT NULL DEFAULT '' CHECK (length(arrival_batch) <= 64),
    regime_id           uuid NOT NULL REFERENCES regimes (id),
    -- The site's time zone at admission: quarantine days and release dates are local dates.
    time_zone           text NOT NULL,
    admitted_at         timestamptz NOT NULL,
    -- Local date of quarantine day 1 (kept across moves).
    day_one             date NOT NULL,
    -- Local date the centralized period counts from (day_one, later if exposure restarted it).
    period_start        date NOT NULL,
    planned_release_at  timestamptz NOT NULL,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    ended_at            timestamptz,
    outcome             text CHECK (outcome IN ('released', 'transferred', 'moved')),
    moved_to            uuid REFERENCES stays (id),
    moved_from          uuid REFERENCES stays (id),
    version             int NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text,
    CONSTRAINT stays_outcome_when_closed CHECK ((status = 'active') = (outcome IS NULL) AND (status = 'active') = (ended_at IS NULL))
);
CREATE UNIQUE INDEX stays_bed_active_key ON stays (room_id, bed) WHERE status = 'active';
CREATE UNIQUE INDEX stays_resident_active_key ON stays (resident_id) WHERE status = 'active';
CREATE INDEX stays_site_active_idx ON stays (site_id, floor, room_id) WHERE status = 'active';
CREATE INDEX stays_regime_active_idx ON stays (regime_id) WHERE status = 'active';
CREATE INDEX stays_release_idx ON stays (site_id, planned_release_at) WHERE status = 'active';
CREATE INDEX stays_resident_idx ON stays (resident_id, admitted_at);
