select
    m.merchant_id,
    m.merchant_name,
    m.category,
    count(f.transaction_id) as transaction_count,
    count(distinct f.customer_id) as distinct_customers,
    coalesce(sum(case when f.status = 'settled' then f.amount_usd end), 0) as settled_volume_usd,
    round(
        sum(case when f.status in ('refunded', 'disputed') then 1 else 0 end)::numeric
        / nullif(count(f.transaction_id), 0),
        4
    ) as refund_or_dispute_rate
from {{ ref('dim_merchants') }} as m
left join {{ ref('fact_transactions') }} as f using (merchant_id)
where m.is_current
group by 1, 2, 3
