{# Validity window of an SCD2 version. The first version of each key reaches
   back to the beginning of time, so facts older than the first snapshot still
   find their dimension row. #}
{% macro scd2_valid_from(key) -%}
    case
        when row_number() over (partition by {{ key }} order by dbt_valid_from) = 1
            then timestamp '1900-01-01'
        else dbt_valid_from
    end
{%- endmacro %}

{% macro scd2_valid_to() -%}
    coalesce(dbt_valid_to, timestamp '9999-12-31')
{%- endmacro %}
