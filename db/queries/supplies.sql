-- Supplies. Every site-scoped read takes :site_ids (NULL = all sites).

-- name: list_items
SELECT id, sku, name, unit, category, usage_rule, usage_rate::float8 AS usage_rate, created_at
FROM supply_items
WHERE (:after_sku::text IS NULL OR sku > :after_sku::text)
ORDER BY sku
LIMIT :limit;

-- name: get_items_by_ids
SELECT id, sku, name, unit, category, usage_rule, usage_rate::float8 AS usage_rate, created_at
FROM supply_items
WHERE id = ANY(:ids::uuid[]);

-- name: insert_item^
INSERT INTO supply_items (id, sku, name, unit, category, usage_rule, usage_rate)
VALUES (coalesce(:id::uuid, gen_random_uuid()), :sku, :name, :unit, :category, :usage_rule, :usage_rate)
RETURNING id, sku, name, unit, category, usage_rule, usage_rate::float8 AS usage_rate, created_at;

-- name: lock_stock^
-- The row lock serializes every change of one item's stock at one site.
SELECT site_id, item_id, quantity, reorder_level, target_level, low, version
FROM supply_stock
WHERE site_id = :site_id AND item_id = :item_id
FOR UPDATE;

-- name: create_stock!
INSERT INTO supply_stock (site_id, item_id) VALUES (:site_id, :item_id)
ON CONFLICT (site_id, item_id) DO NOTHING;

-- name: get_movement^
SELECT id, site_id, item_id, kind, delta, quantity_after, generation, reason, counterpart_id, replenishment_id,
       actor, recorded_at, created_at
FROM supply_movements
WHERE id = :id;

-- name: insert_movement^
-- The trigger applies the delta to the stock row and fills quantity_after and generation.
INSERT INTO supply_movements (id, site_id, item_id, kind, delta, reason, counterpart_id, replenishment_id, actor, recorded_at)
VALUES (:id, :site_id, :item_id, :kind, :delta, :reason, :counterpart_id, :replenishment_id, :actor,
        coalesce(:recorded_at::timestamptz, now()))
RETURNING id, site_id, item_id, kind, delta, quantity_after, generation, reason, counterpart_id, replenishment_id,
          actor, recorded_at, created_at;

-- name: set_low^
UPDATE supply_stock SET low = :low
WHERE site_id = :site_id AND item_id = :item_id
RETURNING version;

-- name: set_levels^
UPDATE supply_stock SET reorder_level = :reorder_level, target_level = :target_level
WHERE site_id = :site_id AND item_id = :item_id AND version = :version
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
RETURNING site_id, item_id, version;

-- name: list_movements
SELECT id, site_id, item_id, kind, delta, quantity_after, generation, reason, counterpart_id, replenishment_id,
       actor, recorded_at, created_at
FROM supply_movements
WHERE site_id = :site_id
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
  AND (:item_id::uuid IS NULL OR item_id = :item_id::uuid)
  AND (:after_at::timestamptz IS NULL OR (created_at, id) < (:after_at::timestamptz, :after_id::uuid))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: stock_levels
-- Stock with the last 7 days of issues (:since is the start of that window).
SELECT s.site_id, s.item_id, i.sku, i.name, i.unit, i.category, i.usage_rule, i.usage_rate::float8 AS usage_rate,
       s.quantity, s.reorder_level, s.target_level, s.low, s.version,
       coalesce((SELECT -sum(m.delta) FROM supply_movements m
                  WHERE m.site_id = s.site_id AND m.item_id = s.item_id AND m.kind = 'issue'
                    AND m.created_at >= :since::timestamptz), 0)::int AS issued_7d
FROM supply_stock s
JOIN supply_items i ON i.id = s.item_id
WHERE (:site_ids::uuid[] IS NULL OR s.site_id = ANY(:site_ids::uuid[]))
  AND (:only_sites::uuid[] IS NULL OR s.site_id = ANY(:only_sites::uuid[]))
  AND (:only_items::uuid[] IS NULL OR s.item_id = ANY(:only_items::uuid[]))
ORDER BY s.site_id, i.sku;

-- name: generations
SELECT site_id, generation
FROM supply_stock_generations
WHERE (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]));

-- name: insert_replenishment^
INSERT INTO supply_replenishments (id, site_id, origin, note, requested_by)
VALUES (coalesce(:id::uuid, gen_random_uuid()), :site_id, :origin, :note, :requested_by)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: insert_replenishment_line!
INSERT INTO supply_replenishment_lines (replenishment_id, item_id, requested)
VALUES (:replenishment_id, :item_id, :requested);

-- name: get_replenishments
SELECT r.id, r.site_id, r.state, r.origin, r.note, r.shipment_ref, r.requested_by, r.version,
       r.created_at, r.acknowledged_at, r.dispatched_at, r.received_at, r.cancelled_at, r.updated_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'item_id', l.item_id, 'requested', l.requested, 'dispatched', l.dispatched,
                    'received', l.received, 'short', l.short) ORDER BY l.item_id)
                 FROM supply_replenishment_lines l WHERE l.replenishment_id = r.id), '[]'::jsonb) AS lines
FROM supply_replenishments r
WHERE r.id = ANY(:ids::uuid[]) AND (:site_ids::uuid[] IS NULL OR r.site_id = ANY(:site_ids::uuid[]));

-- name: list_replenishments
SELECT r.id
FROM supply_replenishments r
WHERE (:site_ids::uuid[] IS NULL OR r.site_id = ANY(:site_ids::uuid[]))
  AND (:only_site::uuid IS NULL OR r.site_id = :only_site::uuid)
  AND (:states::text[] IS NULL OR r.state = ANY(:states::text[]))
  AND (:after_at::timestamptz IS NULL OR (r.created_at, r.id) < (:after_at::timestamptz, :after_id::uuid))
ORDER BY r.created_at DESC, r.id DESC
LIMIT :limit;

-- name: open_replenishment_for_item$
-- Is this item already on its way (not yet received or cancelled) to this site?
SELECT EXISTS (
    SELECT 1 FROM supply_replenishments r JOIN supply_replenishment_lines l ON l.replenishment_id = r.id
    WHERE r.site_id = :site_id AND l.item_id = :item_id AND r.state IN ('open', 'acknowledged', 'dispatched'));

-- name: transition_replenishment^
-- Moves only from an expected state at the expected version (optimistic concurrency).
UPDATE supply_replenishments SET
    state = :to_state,
    version = version + 1,
    updated_at = now(),
    shipment_ref = coalesce(:shipment_ref, shipment_ref),
    acknowledged_at = CASE WHEN :to_state = 'acknowledged' THEN now() ELSE acknowledged_at END,
    dispatched_at = CASE WHEN :to_state = 'dispatched' THEN now() ELSE dispatched_at END,
    received_at = CASE WHEN :to_state = 'received' THEN now() ELSE received_at END,
    cancelled_at = CASE WHEN :to_state = 'cancelled' THEN now() ELSE cancelled_at END
WHERE id = :id AND version = :version AND state = ANY(:from_states::text[])
  AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
RETURNING id;

-- name: lock_replenishment^
SELECT id, site_id, state, version
FROM supply_replenishments
WHERE id = :id AND (:site_ids::uuid[] IS NULL OR site_id = ANY(:site_ids::uuid[]))
FOR UPDATE;

-- name: set_line_dispatched!
UPDATE supply_replenishment_lines SET dispatched = :quantity
WHERE replenishment_id = :replenishment_id AND item_id = :item_id;

-- name: set_line_received!
UPDATE supply_replenishment_lines SET received = :quantity
WHERE replenishment_id = :replenishment_id AND item_id = :item_id;

-- name: generation$
SELECT generation FROM supply_stock_generations WHERE site_id = :site_id;
