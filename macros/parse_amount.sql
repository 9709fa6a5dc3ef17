{# Turns text such as "$1,234.56", "CAD 20.00" or "¥1500" into a numeric amount. #}
{% macro parse_amount(column_name) -%}
    {{ adapter.dispatch('parse_amount', 'payments')(column_name) }}
{%- endmacro %}

{% macro default__parse_amount(column_name) -%}
    nullif(regexp_replace({{ column_name }}, '[^0-9.\-]', '', 'g'), '')::numeric(18, 2)
{%- endmacro %}

{# Redshift's REGEXP_REPLACE replaces every match; its fourth argument is a position. #}
{% macro redshift__parse_amount(column_name) -%}
    nullif(regexp_replace({{ column_name }}, '[^0-9.\-]', ''), '')::numeric(18, 2)
{%- endmacro %}
