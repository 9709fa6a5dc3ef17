select
    c.customer_id,
    c.full_name,
    c.tier,
    count(f.transaction_id) as transaction_count,
    coalesce(sum(case when f.status = 'settled' then f.amount_usd end), 0) as lifetime_value_usd,
    min(f.created_at) as first_transaction_at,
    max(f.created_at) as last_transaction_at
from {{ ref('dim_customers') }} as c
-- current version of each customer

left join {{ ref('fact_transactions') }} as f using (customer_id)
where c.is_current
group by 1, 2, 3
