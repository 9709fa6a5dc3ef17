{# Keeps the latest row per key, by an ordering column (retried deliveries). #}
{% macro deduplicate(relation, partition_by, order_by) -%}
    select * from (
        select
            *,
            row_number() over (
                partition by {{ partition_by }}
                order by {{ order_by }}
            ) as _row_number
        from {{ relation }}
    ) as ranked
    where _row_number = 1
{%- endmacro %}
