{% snapshot merchants_snapshot %}
{{ config(unique_key='merchant_id', strategy='check', check_cols=['merchant_name', 'category', 'country']) }}
-- Merchant history (SCD type 2): name, category and country changes are tracked.
select * from {{ ref('stg_merchants') }}
{% endsnapshot %}
