-- 二级派单: a district bureau forwards a case to one of its schools and stays accountable; the
-- school signs in with a `school` token and sees the cases forwarded to it.
ALTER TABLE tokens ADD COLUMN school text;
ALTER TABLE tokens DROP CONSTRAINT tokens_role_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_role_check
    CHECK (role IN ('operator', 'unit', 'manager', 'admin', 'school'));
ALTER TABLE tokens ADD CONSTRAINT tokens_school_check CHECK ((role = 'school') = (school IS NOT NULL));

CREATE TABLE case_forwards (
    id            bigserial PRIMARY KEY,
    case_id       uuid NOT NULL REFERENCES cases (id),
    school        text NOT NULL,
    unit_code     text NOT NULL REFERENCES units (code),
    note          text NOT NULL DEFAULT '',
    forwarded_at  timestamptz NOT NULL,
    UNIQUE (case_id, school)
);
CREATE INDEX case_forwards_school_idx ON case_forwards (school);
