select
    transaction_date,
    currency,
    count(*) as transaction_count,
    sum(amount) as gross_amount,
    sum(amount_usd) as gross_amount_usd,
    sum(case when status = 'failed' then 1 else 0 end) as failed_count
from {{ ref('fact_transactions') }}
group by 1, 2
