-- Hand-over on release (issue 16): one row per released stay, written in the release's transaction.
-- It holds the receiving community (a street of the region tree) and contact, the home phases'
-- dates computed from the stay's regime version at release, and the release certificate's
-- verification code.
--
-- The contact's name and phone are personal data: stored only encrypted (AES-256-GCM, the stay id
-- bound in, service/access/crypto.py) with what the masked answer needs (the name's first
-- character, the phone's last four digits). The verification code is stored as its SHA-256 (the
-- lookup, unique) and encrypted (so the site can print the certificate again).

CREATE TABLE handovers (
    stay_id              uuid PRIMARY KEY REFERENCES stays (id),
    site_id              uuid NOT NULL REFERENCES sites (id),
    resident_id          uuid NOT NULL REFERENCES residents (id),
    regime_id            uuid NOT NULL REFERENCES regimes (id),
    released_at          timestamptz NOT NULL,
    released_on          date NOT NULL,
    -- The receiving street and contact: required when the regime has a home phase (service rule).
    region_id            uuid REFERENCES regions (id),
    contact_name_enc     text,
    contact_name_mask    text CHECK (length(contact_name_mask) <= 101),
    contact_phone_enc    text,
    contact_phone_tail   text CHECK (length(contact_phone_tail) <= 4),
    note                 text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    -- [{phase, starts_on, ends_on, test_dates}] for the phases after the centralized one.
    phases               jsonb NOT NULL DEFAULT '[]',
    home_ends_on         date,
    certificate_hash     bytea NOT NULL CHECK (length(certificate_hash) = 32),
    certificate_enc      text NOT NULL,
    revoked_at           timestamptz,
    revoked_by           text,
    revoked_reason       text CHECK (length(revoked_reason) <= 500),
    version              int NOT NULL DEFAULT 1,
    created_by           text NOT NULL,
    CONSTRAINT handovers_destination_whole CHECK (
        (region_id IS NULL) = (contact_name_enc IS NULL) AND (contact_name_enc IS NULL) = (contact_phone_enc IS NULL)),
    CONSTRAINT handovers_revocation_whole CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE UNIQUE INDEX handovers_certificate_key ON handovers (certificate_hash);
CREATE INDEX handovers_site_idx ON handovers (site_id, released_at, stay_id);
CREATE INDEX handovers_region_idx ON handovers (region_id, released_at) WHERE region_id IS NOT NULL;
