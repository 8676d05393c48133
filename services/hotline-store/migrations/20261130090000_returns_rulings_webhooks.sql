-- Returns and rulings, co-handling, and signed webhook delivery to units.

-- A manager's ruling forces the lead: it may not return the case again.
ALTER TABLE assignments ADD COLUMN forced boolean NOT NULL DEFAULT false;

-- Set while a returned case waits for a manager's ruling: {rule, explanation, returned_by,
-- proposed_link}. Cleared by the next transition out of `returned`.
ALTER TABLE cases ADD COLUMN ruling_requested jsonb;
CREATE INDEX cases_ruling_idx ON cases (updated_at) WHERE ruling_requested IS NOT NULL;

-- One row per (unit, case event) to deliver. `id` is the delivery id receivers de-duplicate on;
-- `sequence` counts a unit's deliveries for one case from 1 without gaps, so a receiver can see
-- order and gaps. A delivery that used up its retries is `failed` (parked): it and every later
-- delivery of that case to that unit wait until an admin retries or skips it.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    unit_code        text NOT NULL REFERENCES units (code),
    case_id          uuid NOT NULL REFERENCES cases (id),
    sequence         bigint NOT NULL,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    -- The exact bytes signed and sent, the same on every attempt.
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    last_http_status integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    -- The admin who retried or skipped a parked delivery.
    resolved_by      text,
    UNIQUE (unit_code, event_id),
    UNIQUE (unit_code, case_id, sequence)
);
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_failed_idx ON webhook_deliveries (unit_code)
    WHERE status = 'failed';
