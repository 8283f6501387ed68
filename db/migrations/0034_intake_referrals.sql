-- Intake: referrals from contact tracing, the pending-admission queue, risk areas, regime rules.
--
-- Invariants held here:
--   * a person has at most one open referral (pending or assigned): referrals_person_open_key,
--     which also serialises two tracing teams submitting the same person at once (they merge);
--   * a referral that arrived names the stay it became (referrals_arrived_has_stay);
--   * a regime rule is one per (category, risk level) (regime_rules_key, NULLS NOT DISTINCT).

-- Tracing teams (流调) submit people to isolate through the REST API with an API key.
ALTER TABLE api_clients DROP CONSTRAINT api_clients_role_check;
ALTER TABLE api_clients ADD CONSTRAINT api_clients_role_check CHECK (role IN ('logistics', 'lab', 'hospital', 'tracing'));

-- Risk areas (高/中/低风险区) as data: an area code (e.g. 500112 or 渝北区/回兴街道) at a level over a period.
-- Periods of one area never overlap (checked under an advisory lock on the code: service/intake).
CREATE TABLE risk_areas (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text NOT NULL CHECK (length(code) BETWEEN 1 AND 200),
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    level       text NOT NULL CHECK (level IN ('high', 'medium', 'low')),
    valid_from  timestamptz NOT NULL,
    valid_to    timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX risk_areas_code_idx ON risk_areas (code, valid_from);

-- Which regime a category serves at a risk level (NULL level: no risk area known). Without a rule
-- the category's default regime (regimes.category) applies.
CREATE TABLE regime_rules (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    category     text NOT NULL
                 CHECK (category IN ('close_contact', 'secondary_contact', 'inbound_traveller', 'key_area_arrival', 'other')),
    risk_level   text CHECK (risk_level IN ('high', 'medium', 'low')),
    -- A regime code (every version of it: the one in force at admission applies); checked by the service.
    regime_code  text NOT NULL CHECK (regime_code ~ '^[a-z0-9_]{2,40}$'),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL,
    CONSTRAINT regime_rules_key UNIQUE NULLS NOT DISTINCT (category, risk_level)
);

-- A person referred for isolation, waiting in a site's queue until admitted, cancelled or a no-show.
-- Identity is stored like residents' (service/access/crypto.py): ciphertext bound to the referral id,
-- an HMAC blind index for the duplicate check, tails for masking.
CREATE TABLE referrals (
    id               uuid PRIMARY KEY,
    site_id          uuid NOT NULL REFERENCES sites (id),
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'assigned', 'arrived', 'cancelled', 'no_show')),
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
    category         text NOT NULL
                     CHECK (category IN ('close_contact', 'secondary_contact', 'inbound_traveller', 'key_area_arrival', 'other')),
    -- Every index case this person was traced from (duplicate referrals add theirs).
    index_case_refs  text[] NOT NULL DEFAULT '{}' CHECK (cardinality(index_case_refs) <= 50),
    -- The earliest identification of the person: the start of the identification -> isolation time.
    identified_at    timestamptz NOT NULL,
    origin_area      text NOT NULL DEFAULT '' CHECK (length(origin_area) <= 200),
    risk_area_code   text CHECK (length(risk_area_code) <= 200),
    risk_level       text CHECK (risk_level IN ('high', 'medium', 'low')),
    -- The regime the rules proposed at referral; admission asks the rules again.
    regime_code      text NOT NULL,
    needs            text[] NOT NULL DEFAULT '{}' CHECK (needs <@ ARRAY['mobility', 'infant', 'oxygen']::text[]),
    note             text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    submissions      int NOT NULL DEFAULT 1,
    submitted_at     timestamptz NOT NULL DEFAULT now(),
    submitted_by     text NOT NULL,
    assigned_at      timestamptz,
    assigned_by      text,
    closed_at        timestamptz,
    closed_by        text,
    close_reason     text NOT NULL DEFAULT '' CHECK (length(close_reason) <= 500),
    stay_id          uuid REFERENCES stays (id),
    arrived_at       timestamptz,
    version          int NOT NULL DEFAULT 1,
    CONSTRAINT referrals_arrived_has_stay CHECK ((state = 'arrived') = (stay_id IS NOT NULL AND arrived_at IS NOT NULL)),
    CONSTRAINT referrals_closed_at CHECK ((state IN ('pending', 'assigned')) = (closed_at IS NULL))
);
CREATE UNIQUE INDEX referrals_person_open_key ON referrals (document_type, document_index) WHERE state IN ('pending', 'assigned');
CREATE INDEX referrals_site_queue_idx ON referrals (site_id, state, identified_at, id);
CREATE INDEX referrals_site_arrived_idx ON referrals (site_id, arrived_at) WHERE state = 'arrived';
CREATE UNIQUE INDEX referrals_stay_key ON referrals (stay_id) WHERE stay_id IS NOT NULL;

-- Every submission of a referral, the merged duplicates included: who said so, when, from which index case.
CREATE TABLE referral_submissions (
    id              bigserial PRIMARY KEY,
    referral_id     uuid NOT NULL REFERENCES referrals (id),
    site_id         uuid NOT NULL REFERENCES sites (id),
    submitted_by    text NOT NULL,
    index_case_ref  text NOT NULL DEFAULT '',
    identified_at   timestamptz NOT NULL,
    risk_area_code  text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referral_submissions_referral_idx ON referral_submissions (referral_id, id);
