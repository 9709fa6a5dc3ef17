with addresses as (
    select
        customer_id,
        max(case when address_type = 'billing' then country end) as billing_country,
        max(case when address_type = 'shipping' then city end) as shipping_city
    from {{ ref('stg_customer_addresses') }}
    group by customer_id
)

select
    c.customer_id,
    c.full_name,
    c.email,
    c.tier,
    c.preferred_language,
    c.notify_by_email,
    c.notify_by_sms,
    a.billing_country,
    a.shipping_city,
    c.signed_up_at
from {{ ref('stg_customers') }} as c
left join addresses as a using (customer_id)
