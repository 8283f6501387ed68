-- Transfers end to end (issue 17): a destination that must accept a transfer before it is
-- dispatched (optional per facility), and the outcome the hospital reports after arrival.
--
--   requested -> approved -> [destination_approved] -> dispatched -> departed -> arrived
--                   ^   \_______ declined / redirected ______/
-- outcome after arrival: admitted -> discharged | deceased | returned (a new stay at a site)

ALTER TABLE facilities ADD COLUMN requires_acceptance boolean NOT NULL DEFAULT false;

ALTER TABLE transfers
    ADD COLUMN destination_approved_at timestamptz,  -- last acceptance by the destination
    ADD COLUMN outcome text CHECK (outcome IN ('admitted', 'discharged', 'deceased', 'returned')),
    ADD COLUMN outcome_at timestamptz,
    -- A return: the site that took the resident back and the stay it opened there.
    ADD COLUMN return_site_id uuid REFERENCES sites (id),
    ADD COLUMN return_stay_id uuid REFERENCES stays (id);

ALTER TABLE transfers DROP CONSTRAINT transfers_state_check;
ALTER TABLE transfers ADD CONSTRAINT transfers_state_check CHECK (state IN (
    'requested', 'approved', 'destination_approved', 'dispatched', 'departed', 'arrived', 'rejected', 'cancelled'));
ALTER TABLE transfers DROP CONSTRAINT transfers_destination_when_moving;
ALTER TABLE transfers ADD CONSTRAINT transfers_destination_when_moving
    CHECK (state NOT IN ('destination_approved', 'dispatched', 'departed', 'arrived') OR destination_id IS NOT NULL);
ALTER TABLE transfers ADD CONSTRAINT transfers_outcome_after_arrival
    CHECK (outcome IS NULL OR (state = 'arrived' AND outcome_at IS NOT NULL));
ALTER TABLE transfers ADD CONSTRAINT transfers_return_has_stay
    CHECK ((outcome IS NOT DISTINCT FROM 'returned') = (return_stay_id IS NOT NULL AND return_site_id IS NOT NULL));

-- The open states now include destination_approved: one open transfer per stay, the board.
DROP INDEX transfers_stay_active_key;
CREATE UNIQUE INDEX transfers_stay_active_key ON transfers (stay_id)
    WHERE state IN ('requested', 'approved', 'destination_approved', 'dispatched', 'departed');
DROP INDEX transfers_site_board_idx;
CREATE INDEX transfers_site_board_idx ON transfers (site_id, requested_at)
    WHERE state IN ('requested', 'approved', 'destination_approved', 'dispatched', 'departed');

CREATE OR REPLACE FUNCTION transfers_check_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT (
        (OLD.state, NEW.state) IN (
            ('requested', 'approved'), ('requested', 'rejected'),
            ('approved', 'destination_approved'), ('approved', 'dispatched'), ('destination_approved', 'dispatched'),
            ('dispatched', 'departed'), ('departed', 'arrived'),
            ('requested', 'cancelled'), ('approved', 'cancelled'), ('destination_approved', 'cancelled'),
            ('dispatched', 'cancelled'),
            -- declined by the destination, redirected, or refused at the hospital door: back to approved
            ('destination_approved', 'approved'), ('dispatched', 'approved'), ('departed', 'approved'))
    ) THEN
        RAISE EXCEPTION 'transfer % cannot go from % to %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transfers_transition_valid';
    END IF;
    -- Once the resident has left, the transfer can no longer be cancelled.
    IF NEW.state = 'cancelled' AND OLD.consequences_at IS NOT NULL THEN
        RAISE EXCEPTION 'transfer % already departed', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transfers_transition_valid';
    END IF;
    -- Outcomes: admitted may be followed by a final one; a final one is never replaced.
    IF NEW.outcome IS DISTINCT FROM OLD.outcome AND NOT (
        OLD.outcome IS NULL OR (OLD.outcome = 'admitted' AND NEW.outcome IN ('discharged', 'deceased', 'returned'))
    ) THEN
        RAISE EXCEPTION 'transfer % outcome cannot go from % to %', OLD.id, OLD.outcome, NEW.outcome
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transfers_outcome_valid';
    END IF;
    IF NEW.version <> OLD.version + 1 THEN
        RAISE EXCEPTION 'transfer % version must advance by one', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transfers_version_advances';
    END IF;
    RETURN NEW;
END $$;

-- The read model gains the new columns (appended: CREATE OR REPLACE VIEW keeps the old ones in place).
CREATE OR REPLACE VIEW transfer_views AS
SELECT t.id, t.site_id, t.stay_id, t.resident_id, t.room_id, t.reason, t.infectious, t.reason_note,
       t.alert_id, t.sample_id, t.urgency, t.destination_id, t.state, t.version,
       t.requested_by, t.requested_at, t.approved_at, t.dispatched_at, t.departed_at, t.arrived_at, t.closed_at,
       t.vehicle_plate, t.vehicle_kind, t.driver, t.escort, t.handover_note, t.consequences_at, t.updated_at,
       CASE t.urgency WHEN 'emergency' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END AS urgency_rank,
       round((extract(epoch FROM t.dispatched_at - t.requested_at) / 60)::numeric, 1)::float8 AS request_to_dispatch_minutes,
       round((extract(epoch FROM t.arrived_at - t.requested_at) / 60)::numeric, 1)::float8 AS request_to_arrival_minutes,
       t.destination_approved_at, t.outcome, t.outcome_at, t.return_site_id, t.return_stay_id
FROM transfers t;
