{# Processor exports mix ISO timestamps with US-style "MM/DD/YYYY HH24:MI". #}
{% macro parse_mixed_timestamp(column_name) -%}
    {{ adapter.dispatch('parse_mixed_timestamp', 'payments')(column_name) }}
{%- endmacro %}

{% macro default__parse_mixed_timestamp(column_name) -%}
    case
        when {{ column_name }} ~ '^[0-9]{2}/[0-9]{2}/[0-9]{4}'
            then to_timestamp({{ column_name }}, 'MM/DD/YYYY HH24:MI')::timestamp
        else {{ column_name }}::timestamptz::timestamp
    end
{%- endmacro %}
