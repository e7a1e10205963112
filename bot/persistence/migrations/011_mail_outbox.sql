-- Stakeholder e-mail through the outbox (issue 15). An e-mail row is rendered once, when it
-- is queued: ``mail`` holds the message as it will be sent (its Message-ID included), so a
-- retry after a crash sends the very same message. ``status`` gains 'failed' (a relay's
-- permanent refusal: no retry) and ``last_error`` keeps why (scrubbed).
ALTER TABLE outbox
    ADD COLUMN mail        jsonb,
    ADD COLUMN last_error  text;
