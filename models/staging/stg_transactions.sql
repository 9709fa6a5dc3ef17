{{ config(materialized='view') }}

-- One row per transaction: the processor retries deliveries, so the latest
-- ingested copy wins.
with deduplicated as (
    {{ deduplicate(source('curated', 'transactions'), 'transaction_id', 'ingested_at desc') }}
)

select
    transaction_id,
    customer_id,
    merchant_id,
    {{ parse_amount('amount') }} as amount,
    upper(trim(currency)) as currency,
    lower(status) as status,
    {{ parse_mixed_timestamp('created_at') }} as created_at,
    ingested_at
from deduplicated
