"""``settings.JOBS``: named multi-step jobs, as django-db-queue defines them.

::

    JOBS = {
        "import_cats": {
            "tasks": ["cats.jobs.download", "cats.jobs.import_rows"],
            "creation_hook": "cats.jobs.on_create",        # f(job)
            "pre_task_hook": "cats.jobs.before_step",      # f(job)
            "post_task_hook": "cats.jobs.after_step",      # f(job)
            "failure_hook": "cats.jobs.on_failure",        # f(job, exception)
        },
    }

Every path must import to a callable; ``manage.py check`` reports each
problem, and a runtime refuses to start while there is one.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..exceptions import UnknownTask

HOOKS = ("creation_hook", "pre_task_hook", "post_task_hook", "failure_hook")
# The longest job name the job table stores.
NAME_MAX_LENGTH = 100


@dataclass(frozen=True, slots=True)
class JobDefinition:
    name: str
    # Dotted paths of the steps, in order; each is called with the job.
    tasks: tuple[str, ...]
    creation_hook: str | None = None
    pre_task_hook: str | None = None
    post_task_hook: str | None = None
    failure_hook: str | None = None

    def step_after(self, task_path: str) -> str:
        """The step that follows ``task_path``, or "" after the last one.

        Raises UnknownTask if ``task_path`` is not a step of this job here:
        the job was created by a release with other steps.
        """
        try:
            index = self.tasks.index(task_path)
        except ValueError:
            raise UnknownTask(
                f"{task_path!r} is not a step of job {self.name!r} in this "
                f"process's settings.JOBS (its steps: {', '.join(self.tasks)})."
            ) from None
        return self.tasks[index + 1] if index + 1 < len(self.tasks) else ""


# The JOBS object last parsed, with what came of it.
_parsed: tuple[object, dict[str, JobDefinition], list[str]] | None = None
# Imported steps and hooks, by path.
_imported: dict[str, Callable[..., Any]] = {}


def job_definitions() -> dict[str, JobDefinition]:
    """The jobs of ``settings.JOBS``; ImproperlyConfigured if it has problems."""
    definitions, errors = _parse()
    if errors:
        raise ImproperlyConfigured("settings.JOBS: " + " ".join(errors))
    return definitions


def job_definition(name: str) -> JobDefinition:
    """One job of ``settings.JOBS``, or UnknownTask if this process lacks it
    (a job created by another release)."""
    definition = job_definitions().get(name)
    if definition is None:
        raise UnknownTask(f"There is no job named {name!r} in settings.JOBS.")
    return definition


def jobs_errors() -> list[str]:
    """A message per problem of ``settings.JOBS`` (none if it is unset)."""
    return _parse()[1]


def function(path: str) -> Callable[..., Any]:
    """The step or hook at ``path`` (validated with the settings)."""
    found = _imported.get(path)
    if found is None:
        found = _imported[path] = import_string(path)
    return found


def check_jobs(**kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(message, obj="settings.JOBS", id="dbqueue_embedded.E008")
        for message in jobs_errors()
    ]


def _parse() -> tuple[dict[str, JobDefinition], list[str]]:
    global _parsed
    jobs = getattr(settings, "JOBS", {})
    if _parsed is None or _parsed[0] is not jobs:
        _parsed = (jobs, *_parse_jobs(jobs))
    return _parsed[1], _parsed[2]


def _parse_jobs(jobs: Any) -> tuple[dict[str, JobDefinition], list[str]]:
    if not isinstance(jobs, Mapping):
        return {}, [f"JOBS must be a dict of jobs by name, not {type(jobs).__name__}."]
    definitions, errors = {}, []
    for name, entry in jobs.items():
        where = f"JOBS[{name!r}]"
        if not isinstance(name, str) or not name or len(name) > NAME_MAX_LENGTH:
            errors.append(
                f"{where}: a job name must be a non-empty string of at most "
                f"{NAME_MAX_LENGTH} characters."
            )
            continue
        if isinstance(entry, list | tuple):
            errors.append(
                f"{where} is a list; write {{'tasks': [...]}} (django-db-queue "
                "never supported the list form its early README showed)."
            )
            continue
        if not isinstance(entry, Mapping):
            errors.append(f"{where} must be a dict, not {type(entry).__name__}.")
            continue
        entry_errors = _entry_errors(where, entry)
        errors += entry_errors
        if not entry_errors:
            definitions[name] = JobDefinition(
                name=name,
                tasks=tuple(entry["tasks"]),
                **{hook: entry.get(hook) for hook in HOOKS},
            )
    return definitions, errors


def _entry_errors(where: str, entry: Mapping[str, Any]) -> list[str]:
    unknown = set(entry) - {"tasks", *HOOKS}
    if unknown:
        known = ", ".join(["tasks", *HOOKS])
        return [
            f"{where} has unknown key(s) {', '.join(sorted(map(repr, unknown)))}; "
            f"known keys: {known}."
        ]
    tasks = entry.get("tasks")
    if not isinstance(tasks, list | tuple) or not tasks:
        return [f"{where}['tasks'] must be a non-empty list of dotted paths."]
    errors = []
    for index, path in enumerate(tasks):
        errors += _path_errors(f"{where}['tasks'][{index}]", path)
    if len(set(map(str, tasks))) < len(tasks):
        # The stored next step is a path: a repeated one would be ambiguous.
        errors.append(f"{where}['tasks'] names a step twice.")
    for hook in HOOKS:
        if entry.get(hook) is not None:
            errors += _path_errors(f"{where}[{hook!r}]", entry[hook])
    return errors


def _path_errors(where: str, path: Any) -> list[str]:
    if not isinstance(path, str) or "." not in path:
        return [f"{where} must be a dotted path to a function, not {path!r}."]
    try:
        found = function(path)
    except Exception as exc:  # a missing module, or one that fails to import
        return [f"{where}: {path!r} could not be imported: {type(exc).__name__}: {exc}"]
    if not callable(found):
        return [f"{where}: {path!r} is a {type(found).__name__}, not a function."]
    return []
