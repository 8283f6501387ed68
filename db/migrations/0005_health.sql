-- Health monitoring (issue 5): check-ins, samples and pools, retests, alerts, exposure reviews.
--
-- Invariants held here:
--   * check-ins are append-only (trigger) and physiologically plausible (CHECKs);
--   * a barcode names one tube (samples_barcode_key); a pool holds at most 10 swabs;
--   * an alert rule fires once per source (alerts_dedup_key: a replayed check-in or a second
--     sweep cannot raise it twice);
--   * a stay is under at most one open exposure review per source stay.

CREATE TABLE checkins (
    -- Client-generated on the phone: a replayed submission hits the primary key and is a no-op.
    id             uuid PRIMARY KEY,
    stay_id        uuid NOT NULL REFERENCES stays (id),
    site_id        uuid NOT NULL REFERENCES sites (id),
    recorded_at    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    temperature_c  numeric(3, 1) CHECK (temperature_c BETWEEN 30 AND 45),
    spo2           int CHECK (spo2 BETWEEN 50 AND 100),
    pulse          int CHECK (pulse BETWEEN 20 AND 250),
    symptoms       text[] NOT NULL DEFAULT '{}'
                   CHECK (symptoms <@ ARRAY['fever', 'cough', 'sore_throat', 'fatigue', 'loss_of_taste_or_smell',
                                            'shortness_of_breath', 'diarrhoea', 'other']::text[]),
    note           text NOT NULL DEFAULT '' CHECK (length(note) <= 1000),
    recorded_by    text NOT NULL
);
CREATE INDEX checkins_stay_idx ON checkins (stay_id, recorded_at);

CREATE FUNCTION checkins_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'checkins are append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER checkins_append_only BEFORE UPDATE OR DELETE ON checkins
    FOR EACH ROW EXECUTE FUNCTION checkins_append_only();
CREATE TRIGGER checkins_no_truncate BEFORE TRUNCATE ON checkins
    FOR EACH STATEMENT EXECUTE FUNCTION checkins_append_only();

-- Swabs and pool tubes in one table: a barcode is unique across both.
-- A pool tube has no stay (stay_id NULL) and counts its members; a member swab has a stay,
-- pool_id set and no barcode of its own. A member's result follows its pool's
-- ('retest' when the pool is positive: an individual retest is opened).
CREATE TABLE samples (
    id             uuid PRIMARY KEY,
    site_id        uuid NOT NULL REFERENCES sites (id),
    stay_id        uuid REFERENCES stays (id),
    pool_id        uuid REFERENCES samples (id),
    barcode        text CHECK (barcode ~ '^[A-Za-z0-9-]{4,40}$'),
    kind           text NOT NULL CHECK (kind IN ('pcr', 'antigen')),
    scheduled_day  int CHECK (scheduled_day BETWEEN 1 AND 90),
    members        int NOT NULL DEFAULT 0 CHECK (members BETWEEN 0 AND 10),
    collected_at   timestamptz NOT NULL,
    collected_by   text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    result         text NOT NULL DEFAULT 'pending' CHECK (result IN ('pending', 'negative', 'positive', 'invalid', 'retest')),
    ct_values      real[] NOT NULL DEFAULT '{}' CHECK (cardinality(ct_values) <= 4 AND 0 <= ALL (ct_values) AND 50 >= ALL (ct_values)),
    resulted_at    timestamptz,
    resulted_by    text,
    CONSTRAINT samples_barcode_key UNIQUE (barcode),
    -- a tube: a pool (no stay) or an individual swab; a pooled swab has no barcode of its own
    CONSTRAINT samples_shape CHECK (
        (stay_id IS NULL AND pool_id IS NULL AND barcode IS NOT NULL)
        OR (stay_id IS NOT NULL AND pool_id IS NULL AND barcode IS NOT NULL AND members = 0)
        OR (stay_id IS NOT NULL AND pool_id IS NOT NULL AND barcode IS NULL AND members = 0)),
    CONSTRAINT samples_result_time CHECK ((result IN ('pending', 'retest')) OR resulted_at IS NOT NULL)
);
CREATE INDEX samples_stay_idx ON samples (stay_id, scheduled_day) WHERE stay_id IS NOT NULL;
CREATE INDEX samples_pool_idx ON samples (pool_id) WHERE pool_id IS NOT NULL;
CREATE INDEX samples_site_pending_idx ON samples (site_id, collected_at) WHERE result = 'pending';

-- An individual retest to collect after a positive pool; fulfilled by the next swab of that stay.
CREATE TABLE retests (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id        uuid NOT NULL REFERENCES sites (id),
    stay_id        uuid NOT NULL REFERENCES stays (id),
    pool_id        uuid NOT NULL REFERENCES samples (id),
    scheduled_day  int,
    opened_at      timestamptz NOT NULL DEFAULT now(),
    sample_id      uuid REFERENCES samples (id),
    CONSTRAINT retests_once UNIQUE (pool_id, stay_id)
);
CREATE INDEX retests_open_idx ON retests (stay_id) WHERE sample_id IS NULL;

CREATE TABLE alerts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id          uuid NOT NULL REFERENCES sites (id),
    stay_id          uuid NOT NULL REFERENCES stays (id),
    kind             text NOT NULL CHECK (kind IN ('fever', 'low_spo2', 'symptoms', 'missed_checkin', 'positive')),
    -- what raised it: a check-in id, a sample id, or the missed slot's local start time
    dedup_key        text NOT NULL,
    detail           jsonb NOT NULL DEFAULT '{}'::jsonb,
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    raised_at        timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text,
    note             text NOT NULL DEFAULT '' CHECK (length(note) <= 1000),
    version          int NOT NULL DEFAULT 1,
    CONSTRAINT alerts_dedup_key UNIQUE (stay_id, kind, dedup_key),
    CONSTRAINT alerts_state_times CHECK (
        (state = 'open' AND acknowledged_at IS NULL AND resolved_at IS NULL)
        OR (state = 'acknowledged' AND acknowledged_at IS NOT NULL AND resolved_at IS NULL)
        OR (state = 'resolved' AND resolved_at IS NOT NULL))
);
CREATE INDEX alerts_site_idx ON alerts (site_id, state, raised_at DESC, id);
CREATE INDEX alerts_stay_idx ON alerts (stay_id, raised_at);

-- Roommates, household and floor neighbours of a positive case or a transferred resident.
CREATE TABLE exposure_reviews (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id          uuid NOT NULL REFERENCES sites (id),
    stay_id          uuid NOT NULL REFERENCES stays (id),
    source_stay_id   uuid NOT NULL REFERENCES stays (id),
    relation         text NOT NULL CHECK (relation IN ('roommate', 'household', 'floor_neighbour')),
    source           text NOT NULL CHECK (source IN ('positive', 'transfer', 'manual')),
    reason           text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    exposed_at       timestamptz NOT NULL,
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'confirmed', 'dismissed')),
    opened_at        timestamptz NOT NULL DEFAULT now(),
    opened_by        text,
    decided_at       timestamptz,
    decided_by       text,
    note             text NOT NULL DEFAULT '' CHECK (length(note) <= 1000),
    version          int NOT NULL DEFAULT 1,
    CONSTRAINT exposure_reviews_decided CHECK ((state = 'open') = (decided_at IS NULL))
);
CREATE UNIQUE INDEX exposure_reviews_open_key ON exposure_reviews (stay_id, source_stay_id) WHERE state = 'open';
CREATE INDEX exposure_reviews_site_idx ON exposure_reviews (site_id, state, opened_at);
