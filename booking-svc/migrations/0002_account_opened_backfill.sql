-- pay-svc opens a wallet only when it consumes `account.opened` (sign-up writes it in
-- the same transaction as the account). Accounts created before that have none yet:
-- announce each of them once through the outbox, which the relay publishes. The
-- payload is `marquee.saga.v1.AccountOpened { account_id = 1 }` encoded by hand:
-- tag 0x0a (field 1, length-delimited), length 0x24 (36), the UUID's text.
-- pay-svc's ensure_wallet is idempotent, so accounts that already have a wallet get
-- nothing more. On a new database the outbox does not exist yet (booking-svc creates
-- it after its migrations) and there are no accounts, so there is nothing to do.
DO $$
BEGIN
    IF to_regclass('outbox') IS NOT NULL THEN
        INSERT INTO outbox (message_id, kind, saga_id, version, payload)
        SELECT gen_random_uuid(), 'account.opened', id, 1,
               '\x0a24'::bytea || convert_to(id::text, 'UTF8')
        FROM accounts;
    END IF;
END
$$;
