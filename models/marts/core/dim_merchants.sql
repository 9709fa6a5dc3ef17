select
    merchant_id,
    merchant_name,
    category,
    country,
    onboarded_at
from {{ ref('stg_merchants') }}
