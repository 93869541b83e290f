"""The PT-004 proof: three control-flow tests run against a live server as an outside client.

Everything goes through `fcore.interfaces.client` over HTTP; nothing here touches the
database, so the proof means the same against a laptop and against production. Every check is
recomputed on this side where it can be: the audit chain of each run is re-walked from its logs with
`rfc8785` and `hashlib` only, the receipt chain and the `workflow_hash` seal are recomputed
from the receipts and the `FC-RUN-003` event, and the server's own verifiers are asked too.

Tests (workflow `pt004_execution_spine`, five external steps; policies: amount > 10,000
flags at step_2, amount > 1,000,000 denies at step_2):

- A happy path   `{"amount": 500}`     pending → running → completed
- B policy flag  `{"amount": 25000}`   pending → running → paused → running → completed
- C policy deny  `{"amount": 5000000}` pending → running → failed
"""

from .checks import chain_check, receipts_check, status_transitions
from .report import report_markdown, report_summary, report_write
from .scenarios import ProofConfig, proof_run

__all__ = ["ProofConfig", "proof_run", "chain_check", "receipts_check", "status_transitions",
           "report_markdown", "report_summary", "report_write"]
