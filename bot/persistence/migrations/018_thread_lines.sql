-- Thread progress lines through the outbox (issue 16): the executor queues each line as an
-- outbox row (``line``: the message as JSON, ``bot.domain.message_codec``) and a deliverer
-- posts it after the platform call, in ``line_order`` per rollback. A line queued but not
-- yet posted when the process dies is posted by the next one, once (the row's key).
CREATE SEQUENCE outbox_line_order;
ALTER TABLE outbox
    ADD COLUMN line        jsonb,
    ADD COLUMN line_order  bigint;
CREATE INDEX outbox_lines_pending ON outbox (line_order)
    WHERE line IS NOT NULL AND status = 'sending';
