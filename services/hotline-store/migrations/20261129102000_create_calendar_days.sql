-- Official holiday schedules loaded at run time (next year's, each November), on top of the
-- schedules compiled in from seeds/calendar/holidays.tsv.
CREATE TABLE calendar_days (
    day        date PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('off', 'work')),
    name       text NOT NULL DEFAULT '',
    loaded_at  timestamptz NOT NULL DEFAULT now()
);
