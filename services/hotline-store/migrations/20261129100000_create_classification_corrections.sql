-- Operators' and managers' topic corrections: the next training learns from them.
CREATE TABLE classification_corrections (
    id          bigserial PRIMARY KEY,
    appeal_id   uuid NOT NULL REFERENCES appeals (id),
    case_id     uuid REFERENCES cases (id),
    from_topic  text,
    to_topic    text NOT NULL,
    -- 'triage' (an operator re-topics while assigning) or 'return_upheld' (a manager upholds a
    -- unit's "wrong topic" return)
    source      text NOT NULL,
    actor_id    text NOT NULL,
    actor_name  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX classification_corrections_appeal_idx ON classification_corrections (appeal_id);
