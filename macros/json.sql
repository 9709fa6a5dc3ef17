{# JSON kept as text in the raw layer, read the way each warehouse can:
   Postgres casts to jsonb; Redshift has the JSON_EXTRACT_* functions, which
   return an empty string for a missing key (hence the nullif). #}

{# The text at `path` (a list of keys) of a JSON object. #}
{% macro json_text(column, path) -%}
    {{ adapter.dispatch('json_text', 'payments')(column, path) }}
{%- endmacro %}

{% macro default__json_text(column, path) -%}
    ({{ column }}::jsonb #>> '{{ "{" ~ path | join(",") ~ "}" }}')
{%- endmacro %}

{% macro redshift__json_text(column, path) -%}
    nullif(json_extract_path_text({{ column }}, '{{ path | join("', '") }}'), '')
{%- endmacro %}

{# The length of the array under `key`; 0 when there is none. #}
{% macro json_array_length(column, key) -%}
    {{ adapter.dispatch('json_array_length', 'payments')(column, key) }}
{%- endmacro %}

{% macro default__json_array_length(column, key) -%}
    jsonb_array_length(coalesce({{ column }}::jsonb -> '{{ key }}', '[]'::jsonb))
{%- endmacro %}

{% macro redshift__json_array_length(column, key) -%}
    json_array_length(coalesce(nullif(json_extract_path_text({{ column }}, '{{ key }}'), ''), '[]'))
{%- endmacro %}

{# The text of `field` in element `index` (0-based) of the array under `key`. #}
{% macro json_array_item_text(column, key, index, field) -%}
    {{ adapter.dispatch('json_array_item_text', 'payments')(column, key, index, field) }}
{%- endmacro %}

{% macro default__json_array_item_text(column, key, index, field) -%}
    ({{ column }}::jsonb -> '{{ key }}' -> {{ index }} ->> '{{ field }}')
{%- endmacro %}

{% macro redshift__json_array_item_text(column, key, index, field) -%}
    nullif(json_extract_path_text(
        json_extract_array_element_text(json_extract_path_text({{ column }}, '{{ key }}'), {{ index }}),
        '{{ field }}'
    ), '')
{%- endmacro %}
