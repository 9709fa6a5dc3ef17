-- Customer dimension, SCD type 2: one row per version of a customer.
with addresses as (
    select
        customer_id,
        max(case when address_type = 'billing' then country end) as billing_country,
        max(case when address_type = 'shipping' then city end) as shipping_city
    from {{ ref('stg_customer_addresses') }}
    group by customer_id
)

select
    s.dbt_scd_id as customer_sk,
    s.customer_id,
    s.full_name,
    s.email,
    s.tier,
    s.preferred_language,
    s.notify_by_email,
    s.notify_by_sms,
    a.billing_country,
    a.shipping_city,
    s.signed_up_at,
    {{ scd2_valid_from('s.customer_id') }} as valid_from,
    {{ scd2_valid_to() }} as valid_to,
    s.dbt_valid_to is null as is_current
from {{ ref('customers_snapshot') }} as s
left join addresses as a using (customer_id)
