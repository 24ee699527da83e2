"""`mlcost`: estimate a job before it runs, report what was spent, recommend what to change."""
