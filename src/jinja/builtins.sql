{# Strata's internal macros (package "dbt"): naming, generic tests and helpers.
   A project overrides any of them by defining a macro of the same name. #}

{% macro generate_schema_name(custom_schema_name, node) -%}
    {{- adapter.dispatch('generate_schema_name', 'dbt')(custom_schema_name, node) -}}
{%- endmacro %}

{% macro default__generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{- target.schema -}}
    {%- else -%}
        {{- target.schema ~ '_' ~ (custom_schema_name | trim) -}}
    {%- endif -%}
{%- endmacro %}

{% macro generate_schema_name_for_env(custom_schema_name, node) -%}
    {%- if target.name == 'prod' and custom_schema_name is not none -%}
        {{- custom_schema_name | trim -}}
    {%- else -%}
        {{- target.schema -}}
    {%- endif -%}
{%- endmacro %}

{% macro generate_alias_name(custom_alias_name=none, node=none) -%}
    {{- adapter.dispatch('generate_alias_name', 'dbt')(custom_alias_name, node) -}}
{%- endmacro %}

{% macro default__generate_alias_name(custom_alias_name=none, node=none) -%}
    {%- if custom_alias_name -%}
        {{- custom_alias_name | trim -}}
    {%- elif node.version -%}
        {{- node.name ~ '_v' ~ node.version -}}
    {%- else -%}
        {{- node.name -}}
    {%- endif -%}
{%- endmacro %}

{% macro generate_database_name(custom_database_name=none, node=none) -%}
    {{- adapter.dispatch('generate_database_name', 'dbt')(custom_database_name, node) -}}
{%- endmacro %}

{% macro default__generate_database_name(custom_database_name=none, node=none) -%}
    {%- if custom_database_name is none -%}
        {{- target.database -}}
    {%- else -%}
        {{- custom_database_name | trim -}}
    {%- endif -%}
{%- endmacro %}

{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        (select * from {{ relation }} where {{ where }}) dbt_subquery
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}

{% macro should_store_failures() -%}
    {{- return(config.get('store_failures') or false) -}}
{%- endmacro %}

{% macro current_timestamp() -%}
    {{- adapter.dispatch('current_timestamp', 'dbt')() -}}
{%- endmacro %}

{% macro default__current_timestamp() -%}
    now()
{%- endmacro %}

{% macro test_not_null(model, column_name) -%}
    {{- adapter.dispatch('test_not_null', 'dbt')(model, column_name) -}}
{%- endmacro %}

{% macro default__test_not_null(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is null
{% endmacro %}

{% macro test_unique(model, column_name) -%}
    {{- adapter.dispatch('test_unique', 'dbt')(model, column_name) -}}
{%- endmacro %}

{% macro default__test_unique(model, column_name) %}
select
    {{ column_name }} as unique_field,
    count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
group by {{ column_name }}
having count(*) > 1
{% endmacro %}

{% macro test_accepted_values(model, column_name, values, quote=true) -%}
    {{- adapter.dispatch('test_accepted_values', 'dbt')(model, column_name, values, quote) -}}
{%- endmacro %}

{% macro default__test_accepted_values(model, column_name, values, quote=true) %}
with all_values as (
    select
        {{ column_name }} as value_field,
        count(*) as n_records
    from {{ model }}
    group by {{ column_name }}
)
select *
from all_values
where value_field not in (
    {% for value in values -%}
    {% if quote %}'{{ value }}'{% else %}{{ value }}{% endif %}{% if not loop.last %},{% endif %}
    {%- endfor %}
)
{% endmacro %}

{% macro test_relationships(model, column_name, to, field) -%}
    {{- adapter.dispatch('test_relationships', 'dbt')(model, column_name, to, field) -}}
{%- endmacro %}

{% macro default__test_relationships(model, column_name, to, field) %}
with child as (
    select {{ column_name }} as from_field
    from {{ model }}
    where {{ column_name }} is not null
),
parent as (
    select {{ field }} as to_field
    from {{ to }}
)
select from_field
from child
left join parent on child.from_field = parent.to_field
where parent.to_field is null
{% endmacro %}
