{{ config(materialized='ephemeral') }}

-- Flattens the nested addresses array: one row per customer address.
select
    c.customer_id,
    address.ordinality as address_position,
    address.value ->> 'type' as address_type,
    address.value ->> 'city' as city,
    address.value ->> 'country' as country
from (
    select customer_id, profile::jsonb as profile
    from {{ ref('raw_customers') }}
) as c
cross join lateral jsonb_array_elements(coalesce(c.profile -> 'addresses', '[]'::jsonb))
    with ordinality as address(value, ordinality)
