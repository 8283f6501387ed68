-- Supplies: item catalogue, stock per site, the append-only ledger, replenishment, webhooks.
--
-- Invariants held here, not in Python:
--   * stock.quantity >= 0 (CHECK), whatever runs concurrently;
--   * stock.quantity changes only through a ledger row (trigger), so the ledger sums to the stock;
--   * every change to a site's stock bumps that site's generation in the same transaction
--     (the ETag of the logistics poll is derived from it).

CREATE TABLE supply_items (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sku         text NOT NULL UNIQUE CHECK (sku ~ '^[A-Za-z0-9_.-]{2,40}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    unit        text NOT NULL CHECK (length(unit) BETWEEN 1 AND 32),
    category    text NOT NULL CHECK (category IN ('ppe', 'testing', 'disinfection', 'medicine', 'food', 'daily_necessities')),
    -- How the forecast turns activity into usage: usage_rate units per occupied bed per day,
    -- per scheduled swab, per staff shift, or a fixed amount per day.
    usage_rule  text NOT NULL CHECK (usage_rule IN ('per_occupied_bed_day', 'per_swab', 'per_staff_shift', 'fixed_per_day')),
    usage_rate  numeric(12, 3) NOT NULL DEFAULT 0 CHECK (usage_rate >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One number per site, bumped by every change of that site's stock (trigger below).
CREATE TABLE supply_stock_generations (
    site_id     uuid PRIMARY KEY REFERENCES sites (id),
    generation  bigint NOT NULL
);

CREATE TABLE supply_stock (
    site_id       uuid NOT NULL REFERENCES sites (id),
    item_id       uuid NOT NULL REFERENCES supply_items (id),
    quantity      int NOT NULL DEFAULT 0 CONSTRAINT supply_stock_quantity_check CHECK (quantity >= 0),
    reorder_level int NOT NULL DEFAULT 0 CHECK (reorder_level >= 0),
    target_level  int NOT NULL DEFAULT 0 CHECK (target_level >= reorder_level),
    -- Whether the item was below the low-stock line after the last change: an event fires
    -- only when this flips (once per crossing).
    low           boolean NOT NULL DEFAULT false,
    version       int NOT NULL DEFAULT 1,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, item_id)
);

CREATE TABLE supply_movements (
    -- Client-generated on phones (offline replay is a no-op); a transfer's "in" leg gets an id
    -- derived from its "out" leg.
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id         uuid NOT NULL,
    item_id         uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('receipt', 'issue', 'adjustment', 'transfer_out', 'transfer_in', 'stocktake')),
    delta           int NOT NULL,
    quantity_after  int,            -- set by the trigger
    generation      bigint,         -- the site's stock generation after this movement (trigger)
    reason          text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    counterpart_id  uuid,           -- the other leg of a transfer
    replenishment_id uuid,
    actor           text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),   -- on the device
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (site_id, item_id) REFERENCES supply_stock (site_id, item_id),
    CONSTRAINT supply_movements_sign_check CHECK (
        (kind IN ('receipt', 'transfer_in') AND delta > 0)
        OR (kind IN ('issue', 'transfer_out') AND delta < 0)
        OR (kind = 'adjustment' AND delta <> 0 AND reason <> '')
        OR kind = 'stocktake'),
    CHECK ((kind IN ('transfer_out', 'transfer_in')) = (counterpart_id IS NOT NULL))
);
CREATE INDEX supply_movements_usage_idx ON supply_movements (site_id, item_id, kind, created_at) INCLUDE (delta);
CREATE INDEX supply_movements_ledger_idx ON supply_movements (site_id, created_at, id);

-- Inserting a movement is the only way to change a quantity.
CREATE FUNCTION supply_apply_movement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE supply_stock SET quantity = quantity + NEW.delta
     WHERE site_id = NEW.site_id AND item_id = NEW.item_id
    RETURNING quantity INTO NEW.quantity_after;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no stock row for this movement' USING ERRCODE = 'foreign_key_violation',
            CONSTRAINT = 'supply_movements_site_id_item_id_fkey';
    END IF;
    SELECT generation INTO NEW.generation FROM supply_stock_generations WHERE site_id = NEW.site_id;
    RETURN NEW;
END $$;
CREATE TRIGGER supply_movements_apply BEFORE INSERT ON supply_movements
    FOR EACH ROW EXECUTE FUNCTION supply_apply_movement();

CREATE FUNCTION supply_movements_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'supply_movements is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER supply_movements_no_change BEFORE UPDATE OR DELETE ON supply_movements
    FOR EACH ROW EXECUTE FUNCTION supply_movements_append_only();
CREATE TRIGGER supply_movements_no_truncate BEFORE TRUNCATE ON supply_movements
    FOR EACH STATEMENT EXECUTE FUNCTION supply_movements_append_only();

-- A quantity may change only from the movement trigger (trigger depth 2), and a new stock
-- row starts at zero: the ledger therefore always sums to the stock.
CREATE FUNCTION supply_stock_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.quantity <> 0 THEN
        RAISE EXCEPTION 'stock starts at zero; post a receipt' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'supply_stock_ledger_check';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.quantity <> OLD.quantity AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'stock quantity changes only through a movement' USING ERRCODE = 'check_violation',
            CONSTRAINT = 'supply_stock_ledger_check';
    END IF;
    -- Only what the poll shows bumps versions; the low flag is bookkeeping.
    IF TG_OP = 'UPDATE' AND (NEW.quantity, NEW.reorder_level, NEW.target_level)
            IS NOT DISTINCT FROM (OLD.quantity, OLD.reorder_level, OLD.target_level) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    END IF;
    INSERT INTO supply_stock_generations AS g (site_id, generation) VALUES (NEW.site_id, 1)
    ON CONFLICT (site_id) DO UPDATE SET generation = g.generation + 1;
    RETURN NEW;
END $$;
CREATE TRIGGER supply_stock_guard BEFORE INSERT OR UPDATE ON supply_stock
    FOR EACH ROW EXECUTE FUNCTION supply_stock_guard();

CREATE TABLE supply_replenishments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id         uuid NOT NULL REFERENCES sites (id),
    state           text NOT NULL DEFAULT 'open'
                    CHECK (state IN ('open', 'acknowledged', 'dispatched', 'received', 'cancelled')),
    origin          text NOT NULL CHECK (origin IN ('manual', 'low_stock')),
    note            text NOT NULL DEFAULT '' CHECK (length(note) <= 1000),
    shipment_ref    text CHECK (length(shipment_ref) BETWEEN 1 AND 100),
    requested_by    text NOT NULL,
    version         int NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    dispatched_at   timestamptz,
    received_at     timestamptz,
    cancelled_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (state NOT IN ('dispatched', 'received') OR (shipment_ref IS NOT NULL AND dispatched_at IS NOT NULL)),
    CHECK (state <> 'received' OR received_at IS NOT NULL)
);
CREATE INDEX supply_replenishments_site_idx ON supply_replenishments (site_id, created_at DESC, id);

CREATE TABLE supply_replenishment_lines (
    replenishment_id uuid NOT NULL REFERENCES supply_replenishments (id),
    item_id          uuid NOT NULL REFERENCES supply_items (id),
    requested        int NOT NULL CHECK (requested > 0),
    dispatched       int CHECK (dispatched >= 0),
    received         int CHECK (received >= 0),
    -- dispatched - received when the delivery came short (or long: negative)
    short            int GENERATED ALWAYS AS (dispatched - received) STORED,
    PRIMARY KEY (replenishment_id, item_id)
);

CREATE TABLE supply_webhooks (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner       text NOT NULL,          -- principal ref of the logistics client
    site_ids    uuid[],                 -- the owner's scope when registered; NULL = all sites
    url         text NOT NULL CHECK (length(url) <= 2000),
    events      text[] NOT NULL CHECK (cardinality(events) > 0
                 AND events <@ ARRAY['low_stock', 'replenishment']::text[]),
    active      boolean NOT NULL DEFAULT true,
    -- Where this webhook's fan-out stands in the outbox feed (bus.read_events cursor).
    feed_cursor text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX supply_webhooks_owner_idx ON supply_webhooks (owner, created_at);

CREATE TABLE supply_webhook_deliveries (
    id              bigserial PRIMARY KEY,
    webhook_id      uuid NOT NULL REFERENCES supply_webhooks (id),
    event_id        bigint NOT NULL,
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     int,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX supply_webhook_deliveries_due_idx ON supply_webhook_deliveries (next_attempt_at) WHERE state = 'pending';
