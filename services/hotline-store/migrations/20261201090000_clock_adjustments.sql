-- What recomputing a running clock (after a policy or calendar change) must keep: whether it is a
-- reopen clock (its own limit), the working days an approved extension added, and the time it
-- stood paused. Before this, recomputing guessed the first from the case's state and lost the
-- other two.
ALTER TABLE case_deadlines
    ADD COLUMN reopen boolean NOT NULL DEFAULT false,
    ADD COLUMN extension_working_days integer NOT NULL DEFAULT 0,
    ADD COLUMN paused_seconds bigint NOT NULL DEFAULT 0;

-- Existing clocks: a resolve clock that started once the case had been resolved is a reopen clock.
UPDATE case_deadlines d SET reopen = true
 WHERE d.kind = 'resolve'
   AND EXISTS (SELECT 1 FROM case_events e
                WHERE e.case_id = d.case_id AND e.event_type = 'CaseResolved'
                  AND e.occurred_at <= d.starts_at);

-- An approved extension moved the case's running resolve clock (one extension per case).
UPDATE case_deadlines d SET extension_working_days = r.working_days
  FROM extension_requests r
 WHERE r.case_id = d.case_id AND r.decision = 'approved' AND d.kind = 'resolve'
   AND d.starts_at <= r.decided_at AND d.met_at IS NULL AND d.cancelled_at IS NULL;

-- A clock's pauses before this migration are counted from the case's pause and resume events.
UPDATE case_deadlines d SET paused_seconds = p.seconds
  FROM (SELECT dl.id,
               coalesce(sum(extract(epoch FROM r.occurred_at - s.occurred_at)), 0)::bigint AS seconds
          FROM case_deadlines dl
          JOIN case_events s ON s.case_id = dl.case_id AND s.event_type = 'CasePaused'
                            AND s.occurred_at >= dl.starts_at
          JOIN LATERAL (SELECT e.occurred_at FROM case_events e
                         WHERE e.case_id = dl.case_id AND e.event_type = 'CaseResumed'
                           AND e.occurred_at >= s.occurred_at
                         ORDER BY e.occurred_at LIMIT 1) r ON true
         WHERE dl.kind = 'resolve'
         GROUP BY dl.id) p
 WHERE d.id = p.id;
