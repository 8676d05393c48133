-- A clock stands still while the unit waits for the citizen.
ALTER TABLE case_deadlines ADD COLUMN paused_at timestamptz;
ALTER TABLE cases ADD COLUMN paused_at timestamptz, ADD COLUMN pause_reason text;
DROP INDEX case_deadlines_open_idx;
CREATE INDEX case_deadlines_open_idx ON case_deadlines (due_at)
    WHERE met_at IS NULL AND cancelled_at IS NULL AND breached_at IS NULL AND paused_at IS NULL;
