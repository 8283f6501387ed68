-- Access: audit log (append-only). Staff, clients and tokens follow in this file.

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,            -- principal ref, e.g. staff:<uuid>
    actor_role  text NOT NULL,
    action      text NOT NULL,            -- e.g. resident.unmask, checkin.record
    site_id     uuid REFERENCES sites (id),
    subject_id  uuid,
    fields      text[] NOT NULL DEFAULT '{}',
    purpose     text,
    request_id  text
);
CREATE INDEX audit_log_site_idx ON audit_log (site_id, at);
CREATE INDEX audit_log_subject_idx ON audit_log (subject_id, at);

-- The application may insert audit rows, never change or remove them.
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- Staff accounts (people using the apps). Phone is stored only encrypted
-- (service/access/crypto.py, the row id as associated data) with a blind index.
CREATE TABLE staff (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username       text NOT NULL CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    display_name   text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    phone_enc      text,
    phone_index    bytea,
    role           text NOT NULL CHECK (role IN ('command', 'site_manager', 'site_staff', 'medic')),
    password_hash  text NOT NULL,
    active         boolean NOT NULL DEFAULT true,
    version        int NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT staff_phone_pair CHECK ((phone_enc IS NULL) = (phone_index IS NULL))
);
CREATE UNIQUE INDEX staff_username_key ON staff (username);
CREATE INDEX staff_phone_index_idx ON staff (phone_index) WHERE phone_index IS NOT NULL;

CREATE TABLE staff_sites (
    staff_id  uuid NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    site_id   uuid NOT NULL REFERENCES sites (id),
    PRIMARY KEY (staff_id, site_id)
);
CREATE INDEX staff_sites_site_idx ON staff_sites (site_id);

-- Rotating refresh tokens: only the SHA-256 of the token is stored. Every
-- rotation stays in the login's family; presenting a rotated token again
-- (a stolen copy) revokes the whole family.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id   uuid NOT NULL,
    staff_id    uuid NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked_at  timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_staff_idx ON refresh_tokens (staff_id) WHERE revoked_at IS NULL;

-- Integration clients with API keys (qsk_...), stored as SHA-256 of the key.
-- all_sites: every site (only the command centre creates such clients);
-- otherwise the sites listed in api_client_sites.
CREATE TABLE api_clients (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role         text NOT NULL CHECK (role IN ('logistics', 'lab', 'hospital')),
    key_hash     bytea NOT NULL UNIQUE,
    key_prefix   text NOT NULL,
    all_sites    boolean NOT NULL DEFAULT false,
    facility_id  uuid,  -- hospital clients: the facility they speak for (FK added by transfers)
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CHECK (facility_id IS NULL OR role = 'hospital')
);

CREATE TABLE api_client_sites (
    client_id  uuid NOT NULL REFERENCES api_clients (id) ON DELETE CASCADE,
    site_id    uuid NOT NULL REFERENCES sites (id),
    PRIMARY KEY (client_id, site_id)
);
CREATE INDEX api_client_sites_site_idx ON api_client_sites (site_id);
CREATE INDEX audit_log_at_idx ON audit_log (at);
