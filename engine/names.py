"""Names that become file or folder names: job/run ids, pipeline, sweep-study and report names.

Why one rule here: a name from a spool file, a job param or `--name` is joined onto a workspace
folder; `../../x` or an absolute path would write outside the workspace. Every such name is checked
by `validate_name` before it is used as a path, like symbols are by `engine.symbols`. Pure (no
imports of ours), so `store` may use it too.
"""

from __future__ import annotations

import re

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


#: The workspace's folder of job folders, `<workspace>/jobs/<id>/` (with the spool inbox `jobs/inbox/`):
#: the one spelling of that name, read by engine.jobs (JobDir, the inbox) and store.workspace (Workspace),
#: neither of which may import the other's module.
JOBS_DIR = "jobs"


class PathNameError(ValueError):
    """A name that cannot safely be a single path component."""


def validate_name(kind: str, value: object) -> str:
    """`value` when it is 1-128 characters from A-Z a-z 0-9 . _ - (starting with a letter or digit,
    no '..'), else PathNameError naming `kind` and the rule."""
    if not isinstance(value, str) or not _NAME_RE.match(value) or ".." in value:
        raise PathNameError(f"{kind} {value!r:.80} is not valid: use 1-128 characters from A-Z a-z 0-9 . _ - "
                            "starting with a letter or digit (no path separators, no '..')")
    return value


def short_job_id(job_id: str) -> str:
    """`20250101-120000-123-train-ab12cd34` → `120000-ab12cd34` (time of day + random part): what a
    narrow table or panel shows of a job id (the random part keeps it unique). Here, not in
    engine.jobs, so that the console's panels can name a job without importing the job-spec
    validation (engine.task_params and pydantic) before their first frame."""
    parts = job_id.split("-")
    return f"{parts[1]}-{parts[-1]}" if len(parts) >= 5 else job_id[-15:]


__all__ = ["JOBS_DIR", "PathNameError", "short_job_id", "validate_name"]
