"""An attribute run: the request (``request``), the coalition plan and how logged rows are read back (``plan``),
the coalition loop (``driver``), the values report (``report``) and the run itself (``run``)."""

from shapflow.attribution.attribute_request import Request, load_config, parse_request, split_overrides
from shapflow.attribution.plan import batch_of, design_rows, estimate_from_table, masks_of, plan
from shapflow.attribution.report import report_from_table
from shapflow.attribution.run import AttributeResult, reestimate, run_attribute, run_stages

__all__ = ["AttributeResult", "Request", "batch_of", "design_rows", "estimate_from_table", "load_config", "masks_of",
           "parse_request", "plan", "reestimate", "report_from_table", "run_attribute", "run_stages",
           "split_overrides"]
