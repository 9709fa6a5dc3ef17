{% snapshot customers_snapshot %}
{{ config(unique_key='customer_id', strategy='check', check_cols='all', hard_deletes='invalidate') }}
-- Customer history (SCD type 2): a new version whenever any attribute changes.
select * from {{ ref('stg_customers') }}
{% endsnapshot %}
