select
    merchant_id,
    merchant_name,
    category,
    upper(country) as country,
    onboarded_at::date as onboarded_at
from {{ source('curated', 'merchants') }}
