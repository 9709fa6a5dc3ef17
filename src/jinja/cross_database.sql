{# dbt's cross-database macros (package "dbt"), written for Strata from dbt's
   documentation: each dispatches to `<adapter>__name`, falling back to
   `default__name`, so a project or package can override either. #}

{# ---- Data types ---------------------------------------------------------- #}

{% macro type_string() -%}{{ return(adapter.dispatch('type_string', 'dbt')()) }}{%- endmacro %}
{% macro default__type_string() -%}{{ return('text') }}{%- endmacro %}
{% macro redshift__type_string() -%}{{ return('varchar') }}{%- endmacro %}

{% macro type_timestamp() -%}{{ return(adapter.dispatch('type_timestamp', 'dbt')()) }}{%- endmacro %}
{% macro default__type_timestamp() -%}{{ return('timestamp') }}{%- endmacro %}

{% macro type_float() -%}{{ return(adapter.dispatch('type_float', 'dbt')()) }}{%- endmacro %}
{% macro default__type_float() -%}{{ return('float') }}{%- endmacro %}

{% macro type_numeric() -%}{{ return(adapter.dispatch('type_numeric', 'dbt')()) }}{%- endmacro %}
{% macro default__type_numeric() -%}{{ return('numeric(28,6)') }}{%- endmacro %}

{% macro type_bigint() -%}{{ return(adapter.dispatch('type_bigint', 'dbt')()) }}{%- endmacro %}
{% macro default__type_bigint() -%}{{ return('bigint') }}{%- endmacro %}

{% macro type_int() -%}{{ return(adapter.dispatch('type_int', 'dbt')()) }}{%- endmacro %}
{% macro default__type_int() -%}{{ return('integer') }}{%- endmacro %}

{% macro type_boolean() -%}{{ return(adapter.dispatch('type_boolean', 'dbt')()) }}{%- endmacro %}
{% macro default__type_boolean() -%}{{ return('boolean') }}{%- endmacro %}

{# ---- Casting --------------------------------------------------------------- #}

{% macro cast(field, type) -%}{{ adapter.dispatch('cast', 'dbt')(field, type) }}{%- endmacro %}
{% macro default__cast(field, type) -%}cast({{ field }} as {{ type }}){%- endmacro %}

{% macro safe_cast(field, type) -%}{{ adapter.dispatch('safe_cast', 'dbt')(field, type) }}{%- endmacro %}
{# Postgres has no failure-tolerant cast: a plain cast, as dbt does there. #}
{% macro default__safe_cast(field, type) -%}cast({{ field }} as {{ type }}){%- endmacro %}

{% macro cast_bool_to_text(field) -%}{{ adapter.dispatch('cast_bool_to_text', 'dbt')(field) }}{%- endmacro %}
{% macro default__cast_bool_to_text(field) -%}cast({{ field }} as {{ dbt.type_string() }}){%- endmacro %}

{# ---- Strings ------------------------------------------------------------------ #}

{% macro concat(fields) -%}{{ adapter.dispatch('concat', 'dbt')(fields) }}{%- endmacro %}
{% macro default__concat(fields) -%}{{ fields | join(' || ') }}{%- endmacro %}

{% macro hash(field) -%}{{ adapter.dispatch('hash', 'dbt')(field) }}{%- endmacro %}
{% macro default__hash(field) -%}md5(cast({{ field }} as {{ dbt.type_string() }})){%- endmacro %}

{% macro string_literal(value) -%}{{ adapter.dispatch('string_literal', 'dbt')(value) }}{%- endmacro %}
{% macro default__string_literal(value) -%}'{{ value }}'{%- endmacro %}

{% macro escape_single_quotes(expression) -%}{{ adapter.dispatch('escape_single_quotes', 'dbt')(expression) }}{%- endmacro %}
{% macro default__escape_single_quotes(expression) -%}{{ expression | replace("'", "''") }}{%- endmacro %}

{% macro replace(field, old_chars, new_chars) -%}{{ adapter.dispatch('replace', 'dbt')(field, old_chars, new_chars) }}{%- endmacro %}
{% macro default__replace(field, old_chars, new_chars) -%}replace({{ field }}, {{ old_chars }}, {{ new_chars }}){%- endmacro %}

{% macro split_part(string_text, delimiter_text, part_number) -%}{{ adapter.dispatch('split_part', 'dbt')(string_text, delimiter_text, part_number) }}{%- endmacro %}
{% macro default__split_part(string_text, delimiter_text, part_number) -%}
    {%- if part_number >= 0 -%}
        split_part({{ string_text }}, {{ delimiter_text }}, {{ part_number }})
    {%- else -%}
        {# Counted from the end: the part of the reversed text, reversed back. #}
        reverse(split_part(reverse({{ string_text }}), reverse({{ delimiter_text }}), {{ -part_number }}))
    {%- endif -%}
{%- endmacro %}

{% macro position(substring_text, string_text) -%}{{ adapter.dispatch('position', 'dbt')(substring_text, string_text) }}{%- endmacro %}
{% macro default__position(substring_text, string_text) -%}position({{ substring_text }} in {{ string_text }}){%- endmacro %}

{% macro length(expression) -%}{{ adapter.dispatch('length', 'dbt')(expression) }}{%- endmacro %}
{% macro default__length(expression) -%}length({{ expression }}){%- endmacro %}

{% macro right(string_text, length_expression) -%}{{ adapter.dispatch('right', 'dbt')(string_text, length_expression) }}{%- endmacro %}
{% macro default__right(string_text, length_expression) -%}right({{ string_text }}, {{ length_expression }}){%- endmacro %}

{% macro listagg(measure, delimiter_text="','", order_by_clause=none, limit_num=none) -%}
    {{ adapter.dispatch('listagg', 'dbt')(measure, delimiter_text, order_by_clause, limit_num) }}
{%- endmacro %}
{% macro default__listagg(measure, delimiter_text, order_by_clause, limit_num) -%}
    {%- if limit_num -%}
        array_to_string((array_agg({{ measure }}{% if order_by_clause %} {{ order_by_clause }}{% endif %}))[1:{{ limit_num }}], {{ delimiter_text }})
    {%- else -%}
        string_agg({{ measure }}, {{ delimiter_text }}{% if order_by_clause %} {{ order_by_clause }}{% endif %})
    {%- endif -%}
{%- endmacro %}

{# ---- Sets, aggregates, arrays ---------------------------------------------- #}

{% macro intersect() -%}{{ adapter.dispatch('intersect', 'dbt')() }}{%- endmacro %}
{% macro default__intersect() -%}intersect{%- endmacro %}

{% macro except() -%}{{ adapter.dispatch('except', 'dbt')() }}{%- endmacro %}
{% macro default__except() -%}except{%- endmacro %}

{% macro bool_or(expression) -%}{{ adapter.dispatch('bool_or', 'dbt')(expression) }}{%- endmacro %}
{% macro default__bool_or(expression) -%}bool_or({{ expression }}){%- endmacro %}

{% macro any_value(expression) -%}{{ adapter.dispatch('any_value', 'dbt')(expression) }}{%- endmacro %}
{# Postgres 15 has no any_value: any row's value, here the smallest. #}
{% macro default__any_value(expression) -%}min({{ expression }}){%- endmacro %}

{% macro array_construct(inputs=[], data_type=none) -%}
    {{ adapter.dispatch('array_construct', 'dbt')(inputs, data_type or dbt.type_int()) }}
{%- endmacro %}
{% macro default__array_construct(inputs, data_type) -%}
    {%- if inputs | length > 0 -%}array[ {{ inputs | join(' , ') }} ]{%- else -%}array[]::{{ data_type }}[]{%- endif -%}
{%- endmacro %}

{% macro array_append(array, new_element) -%}{{ adapter.dispatch('array_append', 'dbt')(array, new_element) }}{%- endmacro %}
{% macro default__array_append(array, new_element) -%}array_append({{ array }}, {{ new_element }}){%- endmacro %}

{% macro array_concat(array_1, array_2) -%}{{ adapter.dispatch('array_concat', 'dbt')(array_1, array_2) }}{%- endmacro %}
{% macro default__array_concat(array_1, array_2) -%}array_cat({{ array_1 }}, {{ array_2 }}){%- endmacro %}

{# ---- Dates and times ------------------------------------------------------- #}

{% macro current_timestamp_backcompat() -%}{{ adapter.dispatch('current_timestamp_backcompat', 'dbt')() }}{%- endmacro %}
{% macro default__current_timestamp_backcompat() -%}current_timestamp::timestamp{%- endmacro %}

{% macro current_timestamp_in_utc_backcompat() -%}{{ adapter.dispatch('current_timestamp_in_utc_backcompat', 'dbt')() }}{%- endmacro %}
{% macro default__current_timestamp_in_utc_backcompat() -%}(current_timestamp at time zone 'utc')::timestamp{%- endmacro %}

{% macro date_trunc(datepart, date) -%}{{ adapter.dispatch('date_trunc', 'dbt')(datepart, date) }}{%- endmacro %}
{% macro default__date_trunc(datepart, date) -%}date_trunc('{{ datepart }}', {{ date }}){%- endmacro %}

{% macro dateadd(datepart, interval, from_date_or_timestamp) -%}
    {{ adapter.dispatch('dateadd', 'dbt')(datepart, interval, from_date_or_timestamp) }}
{%- endmacro %}
{% macro default__dateadd(datepart, interval, from_date_or_timestamp) -%}
    {{ from_date_or_timestamp }} + ((interval '1 {{ datepart }}') * ({{ interval }}))
{%- endmacro %}

{# The number of `datepart` boundaries between two dates or timestamps. #}
{% macro datediff(first_date, second_date, datepart) -%}
    {{ adapter.dispatch('datediff', 'dbt')(first_date, second_date, datepart) }}
{%- endmacro %}
{% macro default__datediff(first_date, second_date, datepart) -%}
    {%- set part = datepart | lower -%}
    {%- set years -%}(date_part('year', ({{ second_date }})::date) - date_part('year', ({{ first_date }})::date)){%- endset -%}
    {%- set days -%}(({{ second_date }})::date - ({{ first_date }})::date){%- endset -%}
    {%- set hours -%}({{ days }} * 24 + {{ dbt._strata_part_diff('hour', first_date, second_date) }}){%- endset -%}
    {%- set minutes -%}({{ hours }} * 60 + {{ dbt._strata_part_diff('minute', first_date, second_date) }}){%- endset -%}
    {%- if part == 'year' -%}
        {{ years }}
    {%- elif part == 'quarter' -%}
        ({{ years }} * 4 + {{ dbt._strata_part_diff('quarter', first_date, second_date) }})
    {%- elif part == 'month' -%}
        ({{ years }} * 12 + {{ dbt._strata_part_diff('month', first_date, second_date) }})
    {%- elif part == 'day' -%}
        {{ days }}
    {%- elif part == 'week' -%}
        {# Weeks start on Sunday, as date_part('dow') counts them. #}
        ({{ days }} / 7 + case
            when date_part('dow', ({{ first_date }})::timestamp) <= date_part('dow', ({{ second_date }})::timestamp)
                then case when {{ first_date }} <= {{ second_date }} then 0 else -1 end
            else case when {{ first_date }} <= {{ second_date }} then 1 else 0 end
        end)
    {%- elif part == 'hour' -%}
        {{ hours }}
    {%- elif part == 'minute' -%}
        {{ minutes }}
    {%- elif part == 'second' -%}
        ({{ minutes }} * 60 + floor(date_part('second', ({{ second_date }})::timestamp)) - floor(date_part('second', ({{ first_date }})::timestamp)))
    {%- elif part in ('millisecond', 'microsecond') -%}
        {# date_part gives the seconds' fraction in these units, seconds included. #}
        ({{ minutes }} * {{ 60000 if part == 'millisecond' else 60000000 }} + floor(date_part('{{ part }}', ({{ second_date }})::timestamp)) - floor(date_part('{{ part }}', ({{ first_date }})::timestamp)))
    {%- else -%}
        {{ exceptions.raise_compiler_error("datediff: unsupported datepart '" ~ datepart ~ "'") }}
    {%- endif -%}
{%- endmacro %}

{% macro _strata_part_diff(part, first_date, second_date) -%}
    (date_part('{{ part }}', ({{ second_date }})::timestamp) - date_part('{{ part }}', ({{ first_date }})::timestamp))
{%- endmacro %}

{% macro last_day(date, datepart) -%}{{ adapter.dispatch('last_day', 'dbt')(date, datepart) }}{%- endmacro %}
{% macro default__last_day(date, datepart) -%}
    {%- if datepart | lower == 'quarter' -%}
        cast(date_trunc('quarter', {{ date }}) + interval '3 month' - interval '1 day' as date)
    {%- else -%}
        cast(date_trunc('{{ datepart }}', {{ date }}) + interval '1 {{ datepart }}' - interval '1 day' as date)
    {%- endif -%}
{%- endmacro %}

{% macro date(year, month, day) -%}{{ adapter.dispatch('date', 'dbt')(year, month, day) }}{%- endmacro %}
{% macro default__date(year, month, day) -%}
    make_date({{ year }}, {{ month }}, {{ day }})
{%- endmacro %}

{# One row per number 1..upper_bound, in a column `generated_number`. #}
{% macro generate_series(upper_bound) -%}{{ adapter.dispatch('generate_series', 'dbt')(upper_bound) }}{%- endmacro %}
{% macro default__generate_series(upper_bound) -%}
    select generated_number from generate_series(1, {{ upper_bound }}) as generated_number
{%- endmacro %}

{# Every `datepart` from start_date (included) up to end_date (excluded), in a
   column `date_<datepart>`. #}
{% macro date_spine(datepart, start_date, end_date) -%}
    {{ adapter.dispatch('date_spine', 'dbt')(datepart, start_date, end_date) }}
{%- endmacro %}
{% macro default__date_spine(datepart, start_date, end_date) -%}
    select spine.date_{{ datepart }}
    from (
        select generate_series(
            cast({{ start_date }} as timestamp),
            cast({{ end_date }} as timestamp),
            interval '1 {{ datepart }}'
        ) as date_{{ datepart }}
    ) as spine
    where spine.date_{{ datepart }} < cast({{ end_date }} as timestamp)
{%- endmacro %}
