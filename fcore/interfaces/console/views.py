"""The approval console's views, one module per page family.

- `queue`: the live queue of open gates (filters, sort, countdowns) and `gate_decide`;
- `bulk`: one decision for several selected gates;
- `runs`: the run list with progress, the live run page, cancelling a run;
- `audit_browser`: the audit trail with chain verification;
- `gate_views`: break-glass overrides, their review and one-click email links;
  `evidence`: the pack; `tenants`: the tenant switch for members of several tenants.

Views are interfaces only: reads go through `runs.selectors` (tenant-scoped there), writes
through `runs.services`. The shared door (`console_view`) and helpers are in `access`.
Every page works without JavaScript; with htmx a page polls or swaps a named partial of its
own template, and a history-restore request always gets the full page (`wants_partial`).
"""

from .audit_browser import audit_trail, audit_verify_start
from .bulk import gates_bulk_decide
from .queue import gate_decide, queue
from .runs import run_cancel, run_detail, run_list

__all__ = ["audit_trail", "audit_verify_start", "gate_decide", "gates_bulk_decide", "queue",
           "run_cancel", "run_detail", "run_list"]
