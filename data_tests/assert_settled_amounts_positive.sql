-- Settled transactions must carry a positive amount.
select transaction_id, amount
from {{ ref('fact_transactions') }}
where status = 'settled' and amount <= 0
