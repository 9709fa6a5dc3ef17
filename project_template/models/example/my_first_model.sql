{{ config(materialized='table') }}

select 1 as id, 'first' as label
union all
select 2 as id, 'second' as label
