{# Turns text such as "$1,234.56", "CAD 20.00" or "¥1500" into a numeric amount. #}
{% macro parse_amount(column_name) -%}
    nullif(regexp_replace({{ column_name }}, '[^0-9.\-]', '', 'g'), '')::numeric(18, 2)
{%- endmacro %}
