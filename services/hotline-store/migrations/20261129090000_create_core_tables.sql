-- Hotline's system of record. Kafka carries events; these tables keep the truth.

CREATE TABLE units (
    code            text PRIMARY KEY,
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('department', 'district')),
    district        text,
    aliases         text[] NOT NULL DEFAULT '{}',
    webhook_url     text,
    webhook_secret  text
);

CREATE TABLE appeals (
    id                   uuid PRIMARY KEY,
    content              text NOT NULL,
    channel              text NOT NULL,
    caller_name          text,
    -- The one place a caller's number is stored in clear; everything else gets the masked form.
    caller_phone         text,
    caller_phone_masked  text,
    caller_confidential  boolean NOT NULL DEFAULT false,
    district_hint        text,
    school_hint          text,
    received_at          timestamptz NOT NULL,
    filed_at             timestamptz NOT NULL DEFAULT now(),
    filed_by             text NOT NULL,
    external_id          text UNIQUE,
    idempotency_key      text UNIQUE,
    request_hash         text NOT NULL,
    historical           boolean NOT NULL DEFAULT false,
    traceparent          text,
    -- received → classified → routed | triage | transferred_out
    status               text NOT NULL DEFAULT 'received',
    topic                text,
    confidence           double precision,
    alternatives         jsonb,
    urgent               boolean,
    urgent_cue           text,
    district             text,
    school               text,
    terms                text[],
    education_related    boolean,
    model_version        text,
    classified_at        timestamptz,
    case_id              uuid
);
CREATE INDEX appeals_status_idx ON appeals (status);

CREATE TABLE cases (
    id                 uuid PRIMARY KEY,
    state              text NOT NULL,
    topic              text NOT NULL,
    district           text,
    school             text,
    urgent             boolean NOT NULL DEFAULT false,
    historical         boolean NOT NULL DEFAULT false,
    received_at        timestamptz NOT NULL,
    rule               text,
    catalogue_version  text,
    explanation        text,
    escalation_level   integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_state_idx ON cases (state);

CREATE TABLE assignments (
    id           bigserial PRIMARY KEY,
    case_id      uuid NOT NULL REFERENCES cases (id),
    unit_code    text NOT NULL REFERENCES units (code),
    role         text NOT NULL CHECK (role IN ('lead', 'assisting', 'informed')),
    assigned_at  timestamptz NOT NULL,
    ended_at     timestamptz,
    end_reason   text
);
CREATE INDEX assignments_case_idx ON assignments (case_id);
CREATE INDEX assignments_unit_active_idx ON assignments (unit_code) WHERE ended_at IS NULL;

-- Append-only history of every case transition, with its actor.
CREATE TABLE case_events (
    id            bigserial PRIMARY KEY,
    case_id       uuid NOT NULL REFERENCES cases (id),
    event_id      uuid NOT NULL UNIQUE,
    event_type    text NOT NULL,
    from_state    text,
    to_state      text NOT NULL,
    actor_kind    text NOT NULL,
    actor_id      text NOT NULL,
    actor_name    text NOT NULL,
    actor_unit    text,
    detail        jsonb NOT NULL DEFAULT '{}',
    occurred_at   timestamptz NOT NULL
);
CREATE INDEX case_events_case_idx ON case_events (case_id, id);

CREATE RULE case_events_no_update AS ON UPDATE TO case_events DO INSTEAD NOTHING;
CREATE RULE case_events_no_delete AS ON DELETE TO case_events DO INSTEAD NOTHING;

-- Transactional outbox: written in the same transaction as the business rows, published by the relay.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    stream        text NOT NULL CHECK (stream IN ('appeals', 'cases')),
    aggregate_id  text NOT NULL,
    event_id      uuid NOT NULL UNIQUE,
    event_type    text NOT NULL,
    payload       bytea NOT NULL,
    traceparent   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

CREATE FUNCTION notify_outbox() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('hotline_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();

-- Consumers record what they processed in the same transaction as the effects.
CREATE TABLE processed_events (
    consumer      text NOT NULL,
    event_id      uuid NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE tokens (
    id          uuid PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('operator', 'unit', 'manager', 'admin')),
    unit_code   text REFERENCES units (code),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz,
    CHECK ((role = 'unit') = (unit_code IS NOT NULL))
);

CREATE TABLE case_deadlines (
    id              bigserial PRIMARY KEY,
    case_id         uuid NOT NULL REFERENCES cases (id),
    kind            text NOT NULL CHECK (kind IN ('sign', 'contact', 'resolve', 'callback')),
    unit_code       text,
    starts_at       timestamptz NOT NULL,
    warn_at         timestamptz NOT NULL,
    due_at          timestamptz NOT NULL,
    policy_version  text NOT NULL,
    historical      boolean NOT NULL DEFAULT false,
    met_at          timestamptz,
    cancelled_at    timestamptz,
    warned_at       timestamptz,
    breached_at     timestamptz
);
CREATE INDEX case_deadlines_case_idx ON case_deadlines (case_id);
CREATE INDEX case_deadlines_open_idx ON case_deadlines (due_at)
    WHERE met_at IS NULL AND cancelled_at IS NULL AND breached_at IS NULL;
CREATE UNIQUE INDEX case_deadlines_one_open_per_kind ON case_deadlines (case_id, kind)
    WHERE met_at IS NULL AND cancelled_at IS NULL;

-- Which dead letters were re-sent, so a redrive never sends one twice.
CREATE TABLE dead_letter_redrives (
    dlq_topic      text NOT NULL,
    dlq_partition  integer NOT NULL,
    dlq_offset     bigint NOT NULL,
    redriven_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
