-- Webhooks shared by every integration (issues 14, 17): the logistics tables become the generic
-- ones (service/webhooks). A webhook now subscribes to outbox event types or domains and records
-- who registered it (role, sites, facility), so that fan-out shows it exactly what the change feed
-- would show its owner (service/policy.py EVENT_READS).

ALTER TABLE supply_webhooks RENAME TO webhooks;
ALTER TABLE supply_webhook_deliveries RENAME TO webhook_deliveries;
ALTER INDEX supply_webhooks_owner_idx RENAME TO webhooks_owner_idx;
ALTER INDEX supply_webhook_deliveries_due_idx RENAME TO webhook_deliveries_due_idx;
ALTER INDEX supply_webhook_deliveries_done_idx RENAME TO webhook_deliveries_done_idx;
ALTER TABLE webhooks DROP CONSTRAINT supply_webhooks_events_check;

ALTER TABLE webhooks
    ADD COLUMN owner_role  text,
    ADD COLUMN facility_id uuid REFERENCES facilities (id),
    -- The API it was registered through: 'supplies' (/supplies/webhooks, events low_stock and
    -- replenishment) or 'webhooks' (/webhooks, event types or domains).
    ADD COLUMN api         text NOT NULL DEFAULT 'webhooks' CHECK (api IN ('supplies', 'webhooks'));

-- Until now only logistics clients and the command role registered webhooks, all for supplies.
UPDATE webhooks SET
    owner_role = CASE WHEN owner LIKE 'client:%' THEN 'logistics' ELSE 'command' END,
    api = 'supplies',
    events = ARRAY(
        SELECT DISTINCT t FROM unnest(events) AS e(name) CROSS JOIN LATERAL unnest(CASE e.name
            WHEN 'low_stock' THEN ARRAY['supplies.low_stock']
            WHEN 'replenishment' THEN ARRAY['supplies.replenishment_requested', 'supplies.replenishment_acknowledged',
                                            'supplies.replenishment_dispatched', 'supplies.replenishment_received',
                                            'supplies.replenishment_cancelled']
            ELSE ARRAY[e.name] END) AS t
        ORDER BY t);

ALTER TABLE webhooks
    ALTER COLUMN owner_role SET NOT NULL,
    ADD CONSTRAINT webhooks_events_check CHECK (cardinality(events) BETWEEN 1 AND 50);
