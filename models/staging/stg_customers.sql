with source as (
    select
        customer_id,
        full_name,
        signed_up_at,
        profile::jsonb as profile
    from {{ ref('raw_customers') }}
)

select
    customer_id,
    full_name,
    signed_up_at::date as signed_up_at,
    profile ->> 'email' as email,
    profile ->> 'tier' as tier,
    profile -> 'preferences' ->> 'language' as preferred_language,
    coalesce((profile -> 'preferences' -> 'notifications' ->> 'email')::boolean, false) as notify_by_email,
    coalesce((profile -> 'preferences' -> 'notifications' ->> 'sms')::boolean, false) as notify_by_sms,
    jsonb_array_length(coalesce(profile -> 'addresses', '[]'::jsonb)) as address_count
from source
