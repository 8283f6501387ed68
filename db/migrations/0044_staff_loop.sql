-- The staff closed loop (issue 17): the people who work at a site (whether or not they have a qsite
-- account), their shifts by post and zone, their own check-ins and swabs (separate from residents'),
-- their closed-loop status, and their exposure when a resident on a floor they worked turns positive.
-- Everything here but the roster is staff health data: medics and site managers of the site.

CREATE TABLE site_workers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id     uuid NOT NULL REFERENCES sites (id),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    post        text NOT NULL CHECK (post IN ('medical', 'security', 'cleaning', 'catering', 'logistics')),
    -- Works in the red (contaminated) zone: tested daily whatever the post.
    red_zone    boolean NOT NULL DEFAULT false,
    active      boolean NOT NULL DEFAULT true,
    -- Closed-loop status: on duty, resting in the staff area, or isolating after a shift or exposure.
    status      text NOT NULL DEFAULT 'resting' CHECK (status IN ('on_duty', 'resting', 'isolating')),
    isolation_until date,
    version     int NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT site_workers_isolation_has_end CHECK ((status = 'isolating') = (isolation_until IS NOT NULL))
);
CREATE INDEX site_workers_site_idx ON site_workers (site_id, post, name, id);

CREATE TABLE staff_shifts (
    id          uuid PRIMARY KEY,
    site_id     uuid NOT NULL REFERENCES sites (id),
    worker_id   uuid NOT NULL REFERENCES site_workers (id),
    post        text NOT NULL CHECK (post IN ('medical', 'security', 'cleaning', 'catering', 'logistics')),
    red_zone    boolean NOT NULL,
    floor       int CHECK (floor BETWEEN -5 AND 200),  -- the floor worked, if one
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT staff_shifts_positive CHECK (ends_at > starts_at AND ends_at - starts_at <= interval '24 hours')
);
CREATE INDEX staff_shifts_site_idx ON staff_shifts (site_id, starts_at, id);
CREATE INDEX staff_shifts_worker_idx ON staff_shifts (worker_id, starts_at);
-- No worker on two overlapping shifts: checked by the service under the worker's row lock (an
-- exclusion constraint would need btree_gist, which the embedded PostgreSQL may not ship).

CREATE TABLE staff_checkins (
    id             uuid PRIMARY KEY,
    site_id        uuid NOT NULL REFERENCES sites (id),
    worker_id      uuid NOT NULL REFERENCES site_workers (id),
    recorded_at    timestamptz NOT NULL,
    temperature_c  numeric(3, 1) NOT NULL CHECK (temperature_c BETWEEN 30 AND 45),
    spo2           int CHECK (spo2 BETWEEN 50 AND 100),
    symptoms       text[] NOT NULL DEFAULT '{}',
    note           text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    -- What the health rules found (fever, low_spo2, symptoms): the same rules as residents'.
    findings       text[] NOT NULL DEFAULT '{}',
    recorded_by    text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX staff_checkins_worker_idx ON staff_checkins (worker_id, recorded_at DESC);

CREATE TABLE staff_samples (
    id            uuid PRIMARY KEY,
    site_id       uuid NOT NULL REFERENCES sites (id),
    worker_id     uuid NOT NULL REFERENCES site_workers (id),
    barcode       text NOT NULL CHECK (length(barcode) BETWEEN 1 AND 64),
    kind          text NOT NULL DEFAULT 'pcr' CHECK (kind IN ('pcr', 'antigen')),
    collected_at  timestamptz NOT NULL,
    result        text NOT NULL DEFAULT 'pending' CHECK (result IN ('pending', 'negative', 'positive', 'invalid')),
    resulted_at   timestamptz,
    recorded_by   text NOT NULL,
    CONSTRAINT staff_samples_barcode_key UNIQUE (barcode),
    CONSTRAINT staff_samples_resulted CHECK ((result = 'pending') = (resulted_at IS NULL))
);
CREATE INDEX staff_samples_worker_idx ON staff_samples (worker_id, collected_at DESC);

CREATE TABLE staff_exposures (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id         uuid NOT NULL REFERENCES sites (id),
    worker_id       uuid NOT NULL REFERENCES site_workers (id),
    source_stay_id  uuid NOT NULL REFERENCES stays (id),
    floor           int NOT NULL,
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'cleared', 'isolated')),
    opened_at       timestamptz NOT NULL DEFAULT now(),
    decided_by      text,
    decided_at      timestamptz,
    note            text NOT NULL DEFAULT '' CHECK (length(note) <= 1000),
    version         int NOT NULL DEFAULT 1,
    CONSTRAINT staff_exposures_decided CHECK ((state = 'open') = (decided_at IS NULL))
);
-- One open review per worker and source case.
CREATE UNIQUE INDEX staff_exposures_open_key ON staff_exposures (worker_id, source_stay_id) WHERE state = 'open';
CREATE INDEX staff_exposures_site_idx ON staff_exposures (site_id, state, opened_at);
