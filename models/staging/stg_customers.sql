-- Customers with their nested JSON profile flattened into columns.
select
    customer_id,
    full_name,
    signed_up_at::date as signed_up_at,
    {{ json_text('profile', ['email']) }} as email,
    {{ json_text('profile', ['tier']) }} as tier,
    {{ json_text('profile', ['preferences', 'language']) }} as preferred_language,
    coalesce({{ json_text('profile', ['preferences', 'notifications', 'email']) }} = 'true', false) as notify_by_email,
    coalesce({{ json_text('profile', ['preferences', 'notifications', 'sms']) }} = 'true', false) as notify_by_sms,
    {{ json_array_length('profile', 'addresses') }} as address_count
from {{ source('curated', 'customers') }}
