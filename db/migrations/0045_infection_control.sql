-- Infection control at a site (issue 17): inspections with a checklist, findings with severity and a
-- corrective action due by a date, environmental (surface) swabs, and the medical-waste log.

CREATE TABLE inspections (
    id                    uuid PRIMARY KEY,
    site_id               uuid NOT NULL REFERENCES sites (id),
    inspected_at          timestamptz NOT NULL,
    inspector             text NOT NULL,
    -- The checklist: true = satisfactory, false = a finding is expected.
    zoning_ok             boolean NOT NULL,
    ppe_ok                boolean NOT NULL,
    disinfection_records_ok boolean NOT NULL,
    waste_ok              boolean NOT NULL,
    note                  text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inspections_site_idx ON inspections (site_id, inspected_at, id);

CREATE TABLE inspection_findings (
    id                 uuid PRIMARY KEY,
    inspection_id      uuid NOT NULL REFERENCES inspections (id),
    site_id            uuid NOT NULL REFERENCES sites (id),
    area               text NOT NULL CHECK (area IN ('zoning', 'ppe', 'disinfection_records', 'waste')),
    severity           text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    description        text NOT NULL CHECK (length(description) BETWEEN 1 AND 2000),
    corrective_action  text NOT NULL CHECK (length(corrective_action) BETWEEN 1 AND 2000),
    due_on             date NOT NULL,
    state              text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    resolution         text NOT NULL DEFAULT '' CHECK (length(resolution) <= 2000),
    resolved_by        text,
    resolved_at        timestamptz,
    version            int NOT NULL DEFAULT 1,
    CONSTRAINT inspection_findings_resolved CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX inspection_findings_inspection_idx ON inspection_findings (inspection_id);
CREATE INDEX inspection_findings_open_idx ON inspection_findings (site_id, due_on, id) WHERE state = 'open';

CREATE TABLE environmental_samples (
    id            uuid PRIMARY KEY,
    site_id       uuid NOT NULL REFERENCES sites (id),
    location      text NOT NULL CHECK (length(location) BETWEEN 1 AND 200),  -- e.g. "3F corridor door handle"
    floor         int CHECK (floor BETWEEN -5 AND 200),
    barcode       text NOT NULL CHECK (length(barcode) BETWEEN 1 AND 64),
    collected_at  timestamptz NOT NULL,
    result        text NOT NULL DEFAULT 'pending' CHECK (result IN ('pending', 'negative', 'positive', 'invalid')),
    resulted_at   timestamptz,
    recorded_by   text NOT NULL,
    CONSTRAINT environmental_samples_barcode_key UNIQUE (barcode),
    CONSTRAINT environmental_samples_resulted CHECK ((result = 'pending') = (resulted_at IS NULL))
);
CREATE INDEX environmental_samples_site_idx ON environmental_samples (site_id, collected_at, id);

-- One row per sealed batch of medical-waste bags, until the carrier takes it (with its receipt).
CREATE TABLE medical_waste (
    id              uuid PRIMARY KEY,
    site_id         uuid NOT NULL REFERENCES sites (id),
    bags            int NOT NULL CHECK (bags BETWEEN 1 AND 10000),
    weight_kg       numeric(8, 2) NOT NULL CHECK (weight_kg > 0 AND weight_kg <= 100000),
    sealed_by       text NOT NULL CHECK (length(sealed_by) BETWEEN 1 AND 100),
    sealed_at       timestamptz NOT NULL,
    recorded_by     text NOT NULL,
    state           text NOT NULL DEFAULT 'sealed' CHECK (state IN ('sealed', 'handed_over')),
    carrier         text CHECK (length(carrier) BETWEEN 1 AND 200),
    carrier_receipt text CHECK (length(carrier_receipt) BETWEEN 1 AND 100),
    handed_over_at  timestamptz,
    version         int NOT NULL DEFAULT 1,
    CONSTRAINT medical_waste_handover CHECK (
        (state = 'handed_over') = (carrier IS NOT NULL AND carrier_receipt IS NOT NULL AND handed_over_at IS NOT NULL))
);
CREATE INDEX medical_waste_site_idx ON medical_waste (site_id, sealed_at, id);
