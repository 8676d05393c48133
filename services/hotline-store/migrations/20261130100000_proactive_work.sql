-- 未诉先办 and 专项深办: repeats, hotspots, proactive tasks, special items, playbook reminders.

-- Keyed hash (HMAC-SHA256) of the caller's phone: repeats are found by it, never by the number.
ALTER TABLE appeals ADD COLUMN caller_key text;
CREATE INDEX appeals_caller_key_idx ON appeals (caller_key, received_at) WHERE caller_key IS NOT NULL;
CREATE INDEX appeals_school_topic_idx ON appeals (school, topic, received_at) WHERE school IS NOT NULL;
CREATE INDEX appeals_district_topic_idx ON appeals (district, topic, received_at) WHERE district IS NOT NULL;
-- How an appeal joined an existing case as a repeat ({kind, similarity, case_id}); NULL for the
-- appeal that opened its case. `repeat_check` false: an operator unlinked it; route it on its own.
ALTER TABLE appeals ADD COLUMN repeat_match jsonb;
ALTER TABLE appeals ADD COLUMN repeat_check boolean NOT NULL DEFAULT true;

-- A new case about a matter a closed case already handled (重复诉求): counts against the unit
-- that closed the first.
ALTER TABLE cases ADD COLUMN repeat_of uuid REFERENCES cases (id);
ALTER TABLE cases ADD COLUMN repeat_of_unit text;

ALTER TABLE outbox DROP CONSTRAINT outbox_stream_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_stream_check CHECK (stream IN ('appeals', 'cases', 'proactive'));

-- Events of proactive work (hotspots, special items, tasks), kept like case history.
CREATE TABLE proactive_events (
    id            bigserial PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    event_type    text NOT NULL,
    aggregate_id  uuid NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}',
    occurred_at   timestamptz NOT NULL
);
CREATE INDEX proactive_events_aggregate_idx ON proactive_events (aggregate_id, id);
CREATE RULE proactive_events_no_update AS ON UPDATE TO proactive_events DO INSTEAD NOTHING;
CREATE RULE proactive_events_no_delete AS ON DELETE TO proactive_events DO INSTEAD NOTHING;

CREATE TABLE hotspots (
    id             uuid PRIMARY KEY,
    scope          text NOT NULL CHECK (scope IN ('school', 'district')),
    topic          text NOT NULL,
    place          text NOT NULL,
    district       text,
    state          text NOT NULL CHECK (state IN ('open', 'resolved')),
    raised_at      timestamptz NOT NULL,
    resolved_at    timestamptz,
    -- No new hotspot on this key before then.
    quiet_until    timestamptz,
    evidence       jsonb NOT NULL,
    sample_appeals uuid[] NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX hotspots_open_key ON hotspots (scope, topic, place) WHERE state = 'open';
CREATE INDEX hotspots_key_idx ON hotspots (scope, topic, place, raised_at);

CREATE TABLE proactive_tasks (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('hotspot', 'playbook', 'special_item')),
    -- The hotspot, special item or playbook season it comes from.
    source      text NOT NULL,
    unit_code   text NOT NULL REFERENCES units (code),
    title       text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    due_at      timestamptz,
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done')),
    created_at  timestamptz NOT NULL,
    done_at     timestamptz,
    done_note   text,
    UNIQUE (kind, source, unit_code)
);
CREATE INDEX proactive_tasks_unit_idx ON proactive_tasks (unit_code, state);

CREATE TABLE special_items (
    id          uuid PRIMARY KEY,
    title       text NOT NULL,
    topic       text NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('school', 'district', 'city')),
    place       text NOT NULL,
    district    text,
    owner_unit  text NOT NULL REFERENCES units (code),
    state       text NOT NULL CHECK (state IN ('open', 'closed')),
    trigger     jsonb NOT NULL,
    plan        text NOT NULL DEFAULT '',
    deadline    timestamptz NOT NULL,
    opened_at   timestamptz NOT NULL,
    opened_by   text NOT NULL,
    closed_at   timestamptz,
    closed_by   text,
    close_note  text
);
CREATE UNIQUE INDEX special_items_open_key ON special_items (topic, scope, place) WHERE state = 'open';

CREATE TABLE special_item_cases (
    item_id  uuid NOT NULL REFERENCES special_items (id),
    case_id  uuid NOT NULL REFERENCES cases (id),
    PRIMARY KEY (item_id, case_id)
);

CREATE TABLE special_item_notes (
    id       bigserial PRIMARY KEY,
    item_id  uuid NOT NULL REFERENCES special_items (id),
    author   text NOT NULL,
    note     text NOT NULL,
    at       timestamptz NOT NULL
);
