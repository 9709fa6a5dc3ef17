select id, upper(label) as label
from {{ ref('my_first_model') }}
where id = 1
