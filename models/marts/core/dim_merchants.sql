-- Merchant dimension, SCD type 2: one row per version of a merchant.
select
    dbt_scd_id as merchant_sk,
    merchant_id,
    merchant_name,
    category,
    country,
    onboarded_at,
    {{ scd2_valid_from('merchant_id') }} as valid_from,
    {{ scd2_valid_to() }} as valid_to,
    dbt_valid_to is null as is_current
from {{ ref('merchants_snapshot') }}
