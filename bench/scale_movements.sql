-- Stock movements of the history stays numbered ($1, $2]: one batch, one transaction (see scale_history.sql).
-- Receipts first, then as many issues: quantities end where they began (the ledger trigger keeps
-- stock = sum of movements throughout).
INSERT INTO supply_movements (site_id, item_id, kind, delta, reason, actor, recorded_at, created_at)
SELECT st.site_id, st.item_id, 'receipt', 5, 'bench', 'staff:bench', s.admitted_at, s.admitted_at
FROM bench_stays AS s
CROSS JOIN LATERAL (SELECT site_id, item_id FROM supply_stock WHERE site_id = s.site_id ORDER BY item_id OFFSET s.n % 30 LIMIT 1) AS st
WHERE s.n > $1::int AND s.n <= $2::int
ORDER BY s.n;
INSERT INTO supply_movements (site_id, item_id, kind, delta, reason, actor, recorded_at, created_at)
SELECT st.site_id, st.item_id, 'issue', -5, 'bench', 'staff:bench', s.admitted_at + interval '1 day', s.admitted_at + interval '1 day'
FROM bench_stays AS s
CROSS JOIN LATERAL (SELECT site_id, item_id FROM supply_stock WHERE site_id = s.site_id ORDER BY item_id OFFSET s.n % 30 LIMIT 1) AS st
WHERE s.n > $1::int AND s.n <= $2::int
ORDER BY s.n;

