{{ config(
    materialized='table',
    post_hook="analyze {{ this }}"
) }}

select
    t.transaction_id,
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
