{{ config(materialized='ephemeral') }}

-- Flattens the nested addresses array: one row per customer address. The
-- positions come from a small numbers table, which both warehouses can join
-- (a profile holds at most 10 addresses).
with positions as (
    {% for i in range(10) -%}
    select {{ i }} as i{% if not loop.last %} union all{% endif %}
    {% endfor %}
)

select
    c.customer_id,
    p.i + 1 as address_position,
    {{ json_array_item_text('c.profile', 'addresses', 'p.i', 'type') }} as address_type,
    {{ json_array_item_text('c.profile', 'addresses', 'p.i', 'city') }} as city,
    {{ json_array_item_text('c.profile', 'addresses', 'p.i', 'country') }} as country
from {{ source('curated', 'customers') }} as c
join positions as p
    on p.i < {{ json_array_length('c.profile', 'addresses') }}
