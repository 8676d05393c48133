-- 延期: at most one request per case, decided by a manager.
CREATE TABLE extension_requests (
    case_id        uuid PRIMARY KEY REFERENCES cases (id),
    unit_code      text NOT NULL REFERENCES units (code),
    reason         text NOT NULL,
    working_days   integer NOT NULL CHECK (working_days > 0),
    requested_at   timestamptz NOT NULL,
    decision       text CHECK (decision IN ('approved', 'refused')),
    decided_at     timestamptz,
    decided_by     text,
    decision_note  text,
    new_due_at     timestamptz
);
