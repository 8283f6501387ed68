-- One rule for scheduled tests, read by both the release check and the swab worklist (issue 16):
-- before, the worklist listed only today's test day, so a stay that missed earlier swabs was blocked
-- from release without ever appearing on the list of residents to swab.
--
-- For a stay (its resident and quarantine day 1: the stays it was moved through count too), its
-- regime's test days and today's quarantine day:
--   positive          a swab came back positive
--   retest_open       a retest after a positive pool has no negative result yet (blocks release)
--   retest_unswabbed  a retest has not been swabbed yet (to swab)
--   days_not_negative the test days so far without a negative result (blocks release)
--   days_unswabbed    the test days so far without a usable swab (invalid ones do not count): to swab
CREATE FUNCTION stay_test_status(p_resident uuid, p_day_one date, p_test_days int[], p_today int)
RETURNS TABLE (positive boolean, retest_open boolean, retest_unswabbed boolean, days_not_negative int[], days_unswabbed int[])
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH chain AS (SELECT id FROM stays WHERE resident_id = p_resident AND day_one = p_day_one)
    SELECT
        EXISTS (SELECT 1 FROM samples s WHERE s.stay_id IN (SELECT id FROM chain) AND s.result = 'positive'),
        EXISTS (SELECT 1 FROM retests r LEFT JOIN samples s ON s.id = r.sample_id
                WHERE r.stay_id IN (SELECT id FROM chain) AND (s.id IS NULL OR s.result <> 'negative')),
        EXISTS (SELECT 1 FROM retests r WHERE r.stay_id IN (SELECT id FROM chain) AND r.sample_id IS NULL),
        ARRAY(SELECT d FROM unnest(p_test_days) AS d
              WHERE d <= p_today
                AND NOT EXISTS (SELECT 1 FROM samples s
                                WHERE s.stay_id IN (SELECT id FROM chain) AND s.scheduled_day = d AND s.result = 'negative')
              ORDER BY d),
        ARRAY(SELECT d FROM unnest(p_test_days) AS d
              WHERE d <= p_today
                AND NOT EXISTS (SELECT 1 FROM samples s
                                WHERE s.stay_id IN (SELECT id FROM chain) AND s.scheduled_day = d AND s.result <> 'invalid')
              ORDER BY d)
$$;
