{#- dbt's relation and adapter macros, written for Strata from dbt's documented
    behaviour. Each dispatches (`postgres__` / `redshift__` / `default__`), so a
    project or package may override it as in dbt. The warehouse work happens in
    Strata's `adapter` object. -#}

{% macro load_relation(relation) -%}
  {{ return(adapter.get_relation(database=relation.database, schema=relation.schema, identifier=relation.identifier)) }}
{%- endmacro %}

{% macro load_cached_relation(relation) -%}
  {{ return(load_relation(relation)) }}
{%- endmacro %}

{% macro get_columns_in_relation(relation) -%}
  {{ return(adapter.dispatch('get_columns_in_relation', 'dbt')(relation)) }}
{%- endmacro %}

{% macro default__get_columns_in_relation(relation) -%}
  {{ return(adapter.get_columns_in_relation(relation)) }}
{%- endmacro %}

{% macro get_columns_in_query(select_sql) -%}
  {{ return(adapter.dispatch('get_columns_in_query', 'dbt')(select_sql)) }}
{%- endmacro %}

{% macro default__get_columns_in_query(select_sql) -%}
  {% call statement('get_columns_in_query', fetch_result=True, auto_begin=False) -%}
    select * from (
      {{ select_sql }}
    ) as __dbt_sbq
    where false
    limit 0
  {%- endcall %}
  {% set result = load_result('get_columns_in_query') %}
  {{ return(result.table.column_names if result else []) }}
{%- endmacro %}

{% macro drop_relation_if_exists(relation) -%}
  {% if relation is not none %}
    {{ adapter.drop_relation(relation) }}
  {% endif %}
{%- endmacro %}

{% macro drop_relation(relation) -%}
  {{ return(adapter.dispatch('drop_relation', 'dbt')(relation)) }}
{%- endmacro %}

{% macro default__drop_relation(relation) -%}
  {{ adapter.drop_relation(relation) }}
{%- endmacro %}

{% macro truncate_relation(relation) -%}
  {{ return(adapter.dispatch('truncate_relation', 'dbt')(relation)) }}
{%- endmacro %}

{% macro default__truncate_relation(relation) -%}
  {{ adapter.truncate_relation(relation) }}
{%- endmacro %}

{% macro make_temp_relation(base_relation, suffix='__dbt_tmp') -%}
  {{ return(adapter.dispatch('make_temp_relation', 'dbt')(base_relation, suffix)) }}
{%- endmacro %}

{% macro default__make_temp_relation(base_relation, suffix) -%}
  {{ return(base_relation.incorporate(path={"identifier": base_relation.identifier ~ suffix, "schema": none, "database": none})) }}
{%- endmacro %}

{% macro make_intermediate_relation(base_relation, suffix='__dbt_tmp') -%}
  {{ return(base_relation.incorporate(path={"identifier": base_relation.identifier ~ suffix})) }}
{%- endmacro %}

{% macro make_backup_relation(base_relation, backup_relation_type, suffix='__dbt_backup') -%}
  {{ return(base_relation.incorporate(path={"identifier": base_relation.identifier ~ suffix}, type=backup_relation_type)) }}
{%- endmacro %}

{% macro create_schema(relation) -%}
  {{ adapter.create_schema(relation) }}
{%- endmacro %}

{% macro drop_schema(relation) -%}
  {{ adapter.drop_schema(relation) }}
{%- endmacro %}

{% macro get_create_table_as_sql(temporary, relation, sql) -%}
  {{ return(adapter.dispatch('get_create_table_as_sql', 'dbt')(temporary, relation, sql)) }}
{%- endmacro %}

{% macro default__get_create_table_as_sql(temporary, relation, sql) -%}
  {{ return(create_table_as(temporary, relation, sql)) }}
{%- endmacro %}

{% macro create_table_as(temporary, relation, compiled_code, language='sql') -%}
  {{ return(adapter.dispatch('create_table_as', 'dbt')(temporary, relation, compiled_code)) }}
{%- endmacro %}

{% macro default__create_table_as(temporary, relation, sql) -%}
  create {% if temporary %}temporary {% endif %}table {{ relation.include(database=(not temporary), schema=(not temporary)) }}
  as (
    {{ sql }}
  );
{%- endmacro %}

{% macro get_create_view_as_sql(relation, sql) -%}
  {{ return(adapter.dispatch('get_create_view_as_sql', 'dbt')(relation, sql)) }}
{%- endmacro %}

{% macro default__get_create_view_as_sql(relation, sql) -%}
  {{ return(create_view_as(relation, sql)) }}
{%- endmacro %}

{% macro create_view_as(relation, sql) -%}
  {{ return(adapter.dispatch('create_view_as', 'dbt')(relation, sql)) }}
{%- endmacro %}

{% macro default__create_view_as(relation, sql) -%}
  create view {{ relation }} as (
    {{ sql }}
  );
{%- endmacro %}

{% macro get_quoted_csv(column_names) -%}
  {% set quoted = [] %}
  {% for col in column_names -%}
    {% do quoted.append(adapter.quote(col)) %}
  {%- endfor %}
  {{ return(quoted | join(', ')) }}
{%- endmacro %}

{% macro should_full_refresh() -%}
  {% set config_full_refresh = config.get('full_refresh') %}
  {% if config_full_refresh is none %}
    {% set config_full_refresh = flags.FULL_REFRESH %}
  {% endif %}
  {{ return(config_full_refresh) }}
{%- endmacro %}

{% macro check_schema_exists(information_schema, schema) -%}
  {{ return(adapter.check_schema_exists(information_schema.database, schema)) }}
{%- endmacro %}

{#- Incremental strategies' SQL, as dbt's macros of the same names build it
    (custom materializations and strategies call them). -#}

{% macro get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates=none) -%}
  {{ return(adapter.dispatch('get_merge_sql', 'dbt')(target, source, unique_key, dest_columns, incremental_predicates)) }}
{%- endmacro %}

{% macro default__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates=none) -%}
  {%- set predicates = [] -%}
  {%- for p in (incremental_predicates or []) -%}
    {%- do predicates.append(p) -%}
  {%- endfor -%}
  {%- set dest_cols_csv = get_quoted_csv(dest_columns | map(attribute="name")) -%}
  {%- if unique_key -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- for key in keys -%}
      {%- do predicates.append("DBT_INTERNAL_SOURCE." ~ key ~ " = DBT_INTERNAL_DEST." ~ key) -%}
    {%- endfor -%}
  {%- else -%}
    {%- do predicates.append('FALSE') -%}
  {%- endif %}
merge into {{ target }} as DBT_INTERNAL_DEST
    using {{ source }} as DBT_INTERNAL_SOURCE
    on {{ "(" ~ predicates | join(") and (") ~ ")" }}
  {% if unique_key %}
    when matched then update set
        {% for column in dest_columns -%}
        {{ adapter.quote(column.name) }} = DBT_INTERNAL_SOURCE.{{ adapter.quote(column.name) }}{% if not loop.last %}, {% endif %}
        {%- endfor %}
  {% endif %}
    when not matched then insert
        ({{ dest_cols_csv }})
    values
        ({{ dest_cols_csv }})
{%- endmacro %}

{% macro get_delete_insert_merge_sql(target, source, unique_key, dest_columns, incremental_predicates=none) -%}
  {{ return(adapter.dispatch('get_delete_insert_merge_sql', 'dbt')(target, source, unique_key, dest_columns, incremental_predicates)) }}
{%- endmacro %}

{% macro default__get_delete_insert_merge_sql(target, source, unique_key, dest_columns, incremental_predicates=none) -%}
  {%- set dest_cols_csv = get_quoted_csv(dest_columns | map(attribute="name")) -%}
  {%- if unique_key %}
    {%- set keys = [unique_key] if unique_key is string else unique_key %}
delete from {{ target }}
    where ({{ keys | join(', ') }}) in (
        select {{ keys | join(', ') }}
        from {{ source }}
    )
    {%- if incremental_predicates %}
      {%- for predicate in incremental_predicates %}
    and {{ predicate }}
      {%- endfor %}
    {%- endif %};
  {% endif %}
insert into {{ target }} ({{ dest_cols_csv }})
    (
        select {{ dest_cols_csv }}
        from {{ source }}
    )
{%- endmacro %}

{% macro get_insert_overwrite_merge_sql(target, source, dest_columns, predicates, include_sql_header=false) -%}
  {%- set dest_cols_csv = get_quoted_csv(dest_columns | map(attribute="name")) %}
delete from {{ target }}{% if predicates %} where {{ predicates | join(' and ') }}{% endif %};
insert into {{ target }} ({{ dest_cols_csv }})
    (
        select {{ dest_cols_csv }}
        from {{ source }}
    )
{%- endmacro %}

{% macro get_incremental_append_sql(arg_dict) -%}
  {{ return(adapter.dispatch('get_incremental_append_sql', 'dbt')(arg_dict)) }}
{%- endmacro %}

{% macro default__get_incremental_append_sql(arg_dict) -%}
  {%- set dest_cols_csv = get_quoted_csv(arg_dict["dest_columns"] | map(attribute="name")) %}
insert into {{ arg_dict["target_relation"] }} ({{ dest_cols_csv }})
    (
        select {{ dest_cols_csv }}
        from {{ arg_dict["temp_relation"] }}
    )
{%- endmacro %}

{% macro get_incremental_delete_insert_sql(arg_dict) -%}
  {{ return(get_delete_insert_merge_sql(arg_dict["target_relation"], arg_dict["temp_relation"], arg_dict["unique_key"], arg_dict["dest_columns"], arg_dict["incremental_predicates"])) }}
{%- endmacro %}

{% macro get_incremental_merge_sql(arg_dict) -%}
  {{ return(get_merge_sql(arg_dict["target_relation"], arg_dict["temp_relation"], arg_dict["unique_key"], arg_dict["dest_columns"], arg_dict["incremental_predicates"])) }}
{%- endmacro %}

{% macro get_incremental_default_sql(arg_dict) -%}
  {{ return(get_incremental_append_sql(arg_dict)) }}
{%- endmacro %}

{% macro get_true_sql() -%}
  {{ return('TRUE') }}
{%- endmacro %}
