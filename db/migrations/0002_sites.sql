-- Sites: the unit of access. Every site-scoped row references one.

CREATE TABLE sites (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code         text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_-]{2,32}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- district/street path, e.g. '两江新区/礼嘉街道'
    region_path  text NOT NULL DEFAULT '' CHECK (length(region_path) <= 300),
    kind         text NOT NULL DEFAULT 'hotel' CHECK (kind IN ('hotel', 'facility', 'makeshift', 'other')),
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'standby', 'closed')),
    time_zone    text NOT NULL DEFAULT 'Asia/Shanghai',
    address      text NOT NULL DEFAULT '' CHECK (length(address) <= 500),
    contact      text NOT NULL DEFAULT '' CHECK (length(contact) <= 200),
    version      int NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
