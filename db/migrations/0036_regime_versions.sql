-- Regimes are versioned and made of phases (issue 16).
--
-- Each row of `regimes` is now one version of a regime `code`. A stay points at the version it
-- serves (stays.regime_id), so a new version applies to stays admitted from its effective_from on
-- and leaves open stays alone, unless the command centre chooses to re-plan them onto it. The
-- version in force at an instant is the one with the latest effective_from not after it (an instant
-- before the first version gets the first). No two versions of a code share a number or an instant.
--
-- Phases as data: `phases` lists the centralized period, then optionally home isolation, then home
-- monitoring, each with its days and its test days (numbered from the phase's own day 1; the
-- centralized phase's day 1 is quarantine day 1). centralized_days, test_days and home_monitoring_days
-- stay as columns, derived from the phases, for the SQL that reads them (release, swabs, check-ins).

ALTER TABLE regimes DROP CONSTRAINT regimes_code_key;
ALTER TABLE regimes ADD CONSTRAINT regimes_code_version_key UNIQUE (code, version);
ALTER TABLE regimes ADD CONSTRAINT regimes_code_effective_key UNIQUE (code, effective_from);
-- The default regime of a category is one code (its versions repeat the category): checked by the
-- service under an advisory lock, since a constraint cannot say "one code" across versions.
ALTER TABLE regimes DROP CONSTRAINT regimes_category_key;
CREATE INDEX regimes_category_idx ON regimes (category, effective_from) WHERE category IS NOT NULL;

ALTER TABLE regimes ADD COLUMN phases jsonb;
UPDATE regimes SET phases = jsonb_build_array(jsonb_build_object('phase', 'centralized', 'days', centralized_days, 'test_days', to_jsonb(test_days)))
    || CASE WHEN home_monitoring_days > 0
            THEN jsonb_build_array(jsonb_build_object('phase', 'home_monitoring', 'days', home_monitoring_days, 'test_days', '[]'::jsonb))
            ELSE '[]'::jsonb END;
ALTER TABLE regimes ALTER COLUMN phases SET NOT NULL;
ALTER TABLE regimes ADD CONSTRAINT regimes_phases_shape CHECK (
    jsonb_typeof(phases) = 'array' AND jsonb_array_length(phases) BETWEEN 1 AND 3 AND phases -> 0 ->> 'phase' = 'centralized');
ALTER TABLE regimes ADD COLUMN home_isolation_days int NOT NULL DEFAULT 0 CHECK (home_isolation_days BETWEEN 0 AND 60);
ALTER TABLE regimes ADD COLUMN created_by text;
ALTER TABLE regimes ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX regimes_code_effective_idx ON regimes (code, effective_from DESC);
