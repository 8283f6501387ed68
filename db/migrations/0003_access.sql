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
