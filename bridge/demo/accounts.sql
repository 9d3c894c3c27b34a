-- The demo's stand-in for a billing system. Rebuild accounts.sqlite with:
--   rm -f bridge/demo/accounts.sqlite && sqlite3 bridge/demo/accounts.sqlite < bridge/demo/accounts.sql
-- (tests/test_demo.py checks that the two agree).
CREATE TABLE accounts (
    login        TEXT NOT NULL,
    sip_user     TEXT NOT NULL,
    sip_password TEXT NOT NULL,
    domain       TEXT NOT NULL,
    transport    TEXT NOT NULL DEFAULT 'udp',
    caller_id    TEXT
);
INSERT INTO accounts VALUES ('alice', '1001', 'Sip-Secret-1001', 'sip.example.com', 'tls', 'Alice Liddell');
