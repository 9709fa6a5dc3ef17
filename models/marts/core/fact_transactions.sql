{{ config(
    materialized='table',
    dist='customer_sk',
    sort='created_at',
    post_hook="analyze {{ this }}"
) }}

-- One row per transaction, joined to the dimension versions valid when it happened.
select
    t.transaction_id,
    c.customer_sk,
    m.merchant_sk,
    t.customer_id,
    t.merchant_id,
    t.created_at,
    t.created_at::date as transaction_date,
    t.currency,
    t.amount,
    round(t.amount * r.rate_to_usd, 2) as amount_{{ var('reporting_currency') | lower }},
    t.status
from {{ ref('stg_transactions') }} as t
left join {{ ref('currency_rates') }} as r using (currency)
left join {{ ref('dim_customers') }} as c
    on c.customer_id = t.customer_id
    and t.created_at >= c.valid_from and t.created_at < c.valid_to
left join {{ ref('dim_merchants') }} as m
    on m.merchant_id = t.merchant_id
    and t.created_at >= m.valid_from and t.created_at < m.valid_to
