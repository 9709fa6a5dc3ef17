select merchant_name, settled_volume_usd
from {{ ref('merchant_kpis') }}
order by settled_volume_usd desc
limit 10
