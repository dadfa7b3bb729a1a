"""System checks of how a project runs the queue (``manage.py check``).

The backend checks its own ``OPTIONS`` (E001-E007, W001) and ``JOBS`` has its
check (E008). These look around the backend, at the queue's databases and at
the web server that should run the queue:

- from the settings alone, on every ``check``: the SQLite and PostgreSQL
  connection settings of the queue's databases (W002, W004, I001-I003) and
  the server integration (W007);
- with a connection, tagged ``database`` so that they run only for the
  aliases given to ``manage.py check --database`` (and to ``migrate``): the
  SQLite file's journal mode (W003), PostgreSQL's connection limit (W005) and
  recurring tasks scheduled through the Python API (W006).
"""

import ast
import importlib.util
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.tasks import task_backends
from django.utils.module_loading import import_string

from .backend import DatabaseBackend, queue_backend, queue_backend_aliases
from .conf import DASHBOARD_REFRESH_SECONDS, DEFAULT_CONCURRENCY, process_dead_after
from .contrib.asgi import EmbeddedQueue
from .runtime.budget import ConnectionBudget, connection_budget
from .store.sqlite import RUNTIME_BUSY_TIMEOUT_MS

# Seconds a connection waits for SQLite's write lock when OPTIONS set no
# timeout (Python's sqlite3 default).
SQLITE_DEFAULT_TIMEOUT = 5.0
# The least wait for the write lock the queue's database connections should
# have: as long as the runtime's own connections wait (store.sqlite).
SQLITE_MIN_TIMEOUT = RUNTIME_BUSY_TIMEOUT_MS / 1000

GUNICORN_HOOKS_MODULE = "dbqueue_embedded.contrib.gunicorn"

_PRAGMA_VALUE = r"\b{name}\s*(?:=|\()\s*['\"]?(\w+)"


def register() -> None:
    """Register this module's checks with Django (from the app's ready())."""
    checks.register(check_database_settings)
    checks.register(check_server_integration)
    checks.register(check_dashboard_settings)
    checks.register(check_databases, checks.Tags.database)


def least_process_budget(backend: DatabaseBackend, vendor: str) -> ConnectionBudget:
    """The connections one web process running ``backend``'s queue may hold.

    One web thread and the embedded default concurrency, unless OPTIONS set
    another: the least any process running the queue embedded needs.
    """
    return connection_budget(
        concurrency=backend.runtime_options.concurrency
        or DEFAULT_CONCURRENCY["embedded"],
        web_threads=1,
        vendor=vendor,
    )


def check_database_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """SQLite and PostgreSQL connection settings of the queue's databases."""
    messages: list[checks.CheckMessage] = []
    for alias in _queue_databases():
        connection = connections[alias]
        if connection.vendor == "sqlite":
            messages += _sqlite_settings(alias, connection.settings_dict)
        elif connection.vendor == "postgresql":
            messages += _postgresql_settings(alias, connection.settings_dict)
    return messages


def check_databases(
    databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """What only the queue's databases themselves can tell."""
    if databases is None:
        return []
    messages: list[checks.CheckMessage] = []
    for alias, backends in _queue_databases().items():
        if alias not in databases:
            continue
        connection = connections[alias]
        if connection.vendor == "sqlite":
            messages += _sqlite_journal_mode(alias, connection)
        elif connection.vendor == "postgresql":
            messages += _connection_limit(alias, backends, connection)
        messages += _unknown_recurring_tasks(alias, backends, connection)
    return messages


def check_server_integration(**kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when no web server is set up to run the queue (W007).

    Looks at the ASGI application (imported, which starts nothing: the queue
    starts on the server's lifespan startup) for ``EmbeddedQueue``, and at
    ``gunicorn.conf.py`` for an import of the Gunicorn hooks.
    """
    if not any(isinstance(b, DatabaseBackend) for b in task_backends.all()):
        return []
    findings: list[str] = []
    asgi_paths = _asgi_application_paths()
    for path in asgi_paths:
        try:
            application = import_string(path)
        except Exception as exc:  # a broken asgi.py: report it, do not crash
            findings.append(
                f"the ASGI application {path} could not be imported "
                f"({type(exc).__name__}: {exc})"
            )
            continue
        if _wraps_embedded_queue(application):
            return []
        findings.append(f"the ASGI application {path} is not wrapped in EmbeddedQueue")
    if not asgi_paths:
        findings.append(
            "no ASGI application was found (ASGI_APPLICATION is not set and "
            "there is no asgi.py beside WSGI_APPLICATION or the settings)"
        )
    directories = _gunicorn_config_directories()
    configs = [path for d in directories if (path := d / "gunicorn.conf.py").is_file()]
    for config in configs:
        if _imports_gunicorn_hooks(config):
            return []
        findings.append(f"{config} does not import {GUNICORN_HOOKS_MODULE}")
    if not configs:
        findings.append(
            "there is no gunicorn.conf.py in "
            + " or ".join(str(d) for d in directories)
        )
    return [
        checks.Warning(
            "No web server is set up to run the queue: "
            + "; ".join(findings)
            + ". Jobs then run only where manage.py dbqueue_worker runs.",
            hint="Wrap the ASGI application: application = EmbeddedQueue("
            "get_asgi_application()) (from dbqueue_embedded.contrib.asgi), or "
            f"in gunicorn.conf.py: from {GUNICORN_HOOKS_MODULE} import post_fork, "
            "worker_exit. If only dbqueue_worker runs jobs, add "
            "'dbqueue_embedded.W007' to SILENCED_SYSTEM_CHECKS.",
            id="dbqueue_embedded.W007",
        )
    ]


def check_dashboard_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """The settings of the dashboard (E010) and of the metrics endpoint (E009)."""
    from django.core.exceptions import ImproperlyConfigured

    from .metrics.views import metrics_config

    messages: list[checks.CheckMessage] = []
    try:
        metrics_config()
    except ImproperlyConfigured as exc:
        messages.append(
            checks.Error(
                str(exc), obj="settings.DBQUEUE_METRICS", id="dbqueue_embedded.E009"
            )
        )
    permission = getattr(settings, "DBQUEUE_DASHBOARD_PERMISSION", None)
    if permission is not None and not (
        isinstance(permission, str) and re.fullmatch(r"\w+\.\w+", permission)
    ):
        messages.append(
            checks.Error(
                "DBQUEUE_DASHBOARD_PERMISSION must be a permission as "
                f"'app_label.codename', not {permission!r}.",
                obj="settings.DBQUEUE_DASHBOARD_PERMISSION",
                id="dbqueue_embedded.E010",
            )
        )
    refresh = getattr(settings, "DBQUEUE_DASHBOARD_REFRESH", DASHBOARD_REFRESH_SECONDS)
    if (
        isinstance(refresh, bool)
        or not isinstance(refresh, int | float)
        or refresh <= 0
    ):
        messages.append(
            checks.Error(
                "DBQUEUE_DASHBOARD_REFRESH must be a number of seconds above 0, "
                f"not {refresh!r}.",
                obj="settings.DBQUEUE_DASHBOARD_REFRESH",
                id="dbqueue_embedded.E010",
            )
        )
    return messages


def _queue_backends() -> list[DatabaseBackend]:
    """The TASKS backends that are this queue's, with a database that exists."""
    backends = [queue_backend(alias) for alias in queue_backend_aliases()]
    # E007 reports a database option missing from DATABASES.
    return [backend for backend in backends if backend.database in settings.DATABASES]


def _queue_databases() -> dict[str, list[DatabaseBackend]]:
    """The databases holding the queue's tables, with the backends using each."""
    databases: dict[str, list[DatabaseBackend]] = {}
    for backend in _queue_backends():
        databases.setdefault(backend.database, []).append(backend)
    return databases


def _pragma(init_command: str, name: str) -> str | None:
    """The value the last ``PRAGMA name=value`` in ``init_command`` sets."""
    values = re.findall(_PRAGMA_VALUE.format(name=name), init_command, re.IGNORECASE)
    return values[-1] if values else None


def _sqlite_settings(
    alias: str, settings_dict: dict[str, Any]
) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    options = settings_dict.get("OPTIONS", {})
    init_command = options.get("init_command") or ""
    journal_mode = _pragma(init_command, "journal_mode")
    if journal_mode is not None and journal_mode.lower() != "wal":
        messages.append(
            checks.Warning(
                f"DATABASES[{alias!r}]['OPTIONS']['init_command'] sets "
                f"journal_mode={journal_mode}, but the queue switches the SQLite "
                "file to WAL: each new connection switches the file back and "
                "forth, and one that opens while another connection reads fails "
                "with 'database is locked'.",
                hint="Set 'PRAGMA journal_mode=WAL' in init_command, or leave "
                "journal_mode out of it.",
                id="dbqueue_embedded.W002",
            )
        )
    timeout, source = _sqlite_timeout(options, init_command)
    if timeout < SQLITE_MIN_TIMEOUT:
        messages.append(
            checks.Warning(
                f"Connections to SQLite database {alias!r} wait {timeout:g} s for "
                f"the write lock ({source}); the queue's own connections wait "
                f"{SQLITE_MIN_TIMEOUT:g} s. Each write of the queue is short, but "
                "SQLite does not queue the connections waiting for its lock: "
                "under load one can be passed over while every process's claims, "
                "outcomes, heartbeats and prunes take it, and an enqueue that "
                "waits longer than its timeout fails with 'database is locked'.",
                hint=f"Set DATABASES[{alias!r}]['OPTIONS']['timeout'] to "
                f"{SQLITE_MIN_TIMEOUT:g} (seconds) or more.",
                id="dbqueue_embedded.W004",
            )
        )
    if (options.get("transaction_mode") or "DEFERRED").upper() == "DEFERRED":
        messages.append(
            checks.Info(
                f"Transactions on SQLite database {alias!r} start DEFERRED: one "
                "that reads and then writes (an enqueue after a query inside "
                "transaction.atomic(), say) fails at once with 'database is "
                "locked' if another connection writes in the meantime, whatever "
                "the timeout, and the queue writes often (claims, outcomes, a "
                "heartbeat every few seconds).",
                hint=f"Set DATABASES[{alias!r}]['OPTIONS']['transaction_mode'] = "
                "'IMMEDIATE'.",
                id="dbqueue_embedded.I003",
            )
        )
    return messages


def _sqlite_timeout(options: dict[str, Any], init_command: str) -> tuple[float, str]:
    """Seconds a connection waits for the write lock, and what set them.

    ``init_command`` runs after the connection opens, so a busy_timeout there
    wins over the ``timeout`` option.
    """
    busy_timeout = _pragma(init_command, "busy_timeout")
    if busy_timeout is not None and busy_timeout.isdigit():
        return int(busy_timeout) / 1000, "busy_timeout in OPTIONS['init_command']"
    if "timeout" in options:
        return float(options["timeout"]), "OPTIONS['timeout']"
    return SQLITE_DEFAULT_TIMEOUT, "the default, as OPTIONS set no timeout"


def _postgresql_settings(
    alias: str, settings_dict: dict[str, Any]
) -> list[checks.CheckMessage]:
    pool = settings_dict.get("OPTIONS", {}).get("pool")
    max_age = settings_dict.get("CONN_MAX_AGE", 0)
    if not pool and max_age == 0:
        return [
            checks.Info(
                f"Connections to PostgreSQL database {alias!r} are closed at the "
                "end of each request and each job (CONN_MAX_AGE = 0 and no "
                "pool): every request and every job that queries it opens a new "
                "one, which costs a few milliseconds and a PostgreSQL server "
                "process each.",
                hint=f"Set DATABASES[{alias!r}]['OPTIONS']['pool'] = True (needs "
                "psycopg[pool]; size it by the queue's connection budget), or "
                "CONN_MAX_AGE to a number of seconds with CONN_HEALTH_CHECKS = "
                "True.",
                id="dbqueue_embedded.I001",
            )
        ]
    # Django passes CONN_HEALTH_CHECKS on to the pool unless OPTIONS set its check.
    checked = settings_dict.get("CONN_HEALTH_CHECKS") or (
        isinstance(pool, dict) and pool.get("check") is not None
    )
    if not checked:
        kept = "a pool" if pool else f"CONN_MAX_AGE = {max_age}"
        return [
            checks.Info(
                f"Connections to PostgreSQL database {alias!r} are reused "
                f"({kept}) without health checks: after the database restarts or "
                "drops connections, the next job on each job thread (and the next "
                "request on each web thread) fails on a dead connection.",
                hint=f"Set DATABASES[{alias!r}]['CONN_HEALTH_CHECKS'] = True.",
                id="dbqueue_embedded.I002",
            )
        ]
    return []


def _sqlite_journal_mode(
    alias: str, connection: BaseDatabaseWrapper
) -> list[checks.CheckMessage]:
    if connection.is_in_memory_db():
        return []  # no journal to speak of
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        journal_mode = cursor.fetchone()[0]
    if journal_mode.lower() == "wal":
        return []
    init_command = connection.settings_dict.get("OPTIONS", {}).get("init_command")
    if (_pragma(init_command or "", "journal_mode") or "").lower() == "wal":
        why = (
            "OPTIONS['init_command'] asks for WAL, yet SQLite could not switch "
            "the file."
        )
        hint = (
            "Keep the file where SQLite can use WAL: on a local file system, in "
            "a directory the server may write to (https://www.sqlite.org/wal.html)."
        )
    else:
        why = (
            "The queue's runtime switches the file to WAL when it starts; until "
            "then connections use the rollback journal."
        )
        hint = (
            f"Add 'PRAGMA journal_mode=WAL' to DATABASES[{alias!r}]['OPTIONS']"
            "['init_command'], so that the first connection switches the file."
        )
    return [
        checks.Warning(
            f"The SQLite file of database {alias!r} ({connection.settings_dict['NAME']}"
            f") uses journal_mode={journal_mode}, not WAL: a commit (of the queue "
            "or of a request) waits for every reader to finish, and readers wait "
            f"while it commits. {why}",
            hint=hint,
            id="dbqueue_embedded.W003",
        )
    ]


def _connection_limit(
    alias: str, backends: list[DatabaseBackend], connection: BaseDatabaseWrapper
) -> list[checks.CheckMessage]:
    """Compare what processes running the queue may open with max_connections."""
    from .models import WorkerProcess
    from .store import processes

    capacity = processes.connection_capacity(using=alias)
    if capacity is None:
        return []
    budgets = {
        backend.alias: least_process_budget(backend, connection.vendor)
        for backend in backends
    }
    per_process = sum(budget.total for budget in budgets.values())
    accepts = (
        f"more than the {capacity} PostgreSQL database {alias!r} accepts "
        "(max_connections less its reserved slots)"
    )
    hint = (
        "Lower the queue's OPTIONS['concurrency'], run fewer processes, or raise "
        "PostgreSQL's max_connections."
    )
    if per_process > capacity:
        each = ", ".join(f"{name!r}: {budget}" for name, budget in budgets.items())
        return [
            checks.Warning(
                f"One web process running the queue may open {per_process} "
                f"connections ({each}), {accepts}.",
                hint=hint,
                id="dbqueue_embedded.W005",
            )
        ]
    if WorkerProcess._meta.db_table not in connection.introspection.table_names():
        return []  # not migrated yet: no process has registered
    # Processes count while the queue does not presume them dead.
    alive_within = max(
        process_dead_after(backend.runtime_options, connection.vendor)
        for backend in backends
    )
    count, demand = processes.connection_demand(
        using=alias, alive_within=timedelta(seconds=alive_within)
    )
    if demand > capacity:
        return [
            checks.Warning(
                f"The {count} processes running the queue now may open up to "
                f"{demand} connections together, {accepts}.",
                hint=hint,
                id="dbqueue_embedded.W005",
            )
        ]
    return []


def _unknown_recurring_tasks(
    alias: str, backends: list[DatabaseBackend], connection: BaseDatabaseWrapper
) -> list[checks.CheckMessage]:
    """Schedules added with schedule_recurring_task() whose task is gone."""
    from .exceptions import UnknownTask
    from .models import RecurringTask
    from .results import import_task

    if RecurringTask._meta.db_table not in connection.introspection.table_names():
        return []  # not migrated yet: nothing was scheduled
    rows = (
        RecurringTask.objects.using(alias)
        .filter(backend__in=[backend.alias for backend in backends])
        .order_by("backend", "key")
    )
    messages: list[checks.CheckMessage] = []
    for row in rows:
        try:
            import_task(row.task_path)
        except UnknownTask as exc:
            messages.append(
                checks.Warning(
                    f"Recurring task {row.key!r} of task backend {row.backend!r}, "
                    f"scheduled with schedule_recurring_task(), cannot run: {exc} "
                    "Each of its ticks logs an error and enqueues nothing.",
                    hint="Restore the task, or remove the schedule: "
                    f"unschedule_recurring_task({row.key!r}, "
                    f"backend={row.backend!r}).",
                    id="dbqueue_embedded.W006",
                )
            )
    return messages


def _asgi_application_paths() -> list[str]:
    """Dotted paths of the project's ASGI application, if it has one."""
    configured = getattr(settings, "ASGI_APPLICATION", None)
    if configured:
        return [configured]
    # Django's startproject puts asgi.py beside wsgi.py and settings.py.
    modules = [settings.SETTINGS_MODULE]
    if settings.WSGI_APPLICATION:  # "package.wsgi.application"
        modules.insert(0, settings.WSGI_APPLICATION.rpartition(".")[0])
    paths = []
    for module in filter(None, modules):
        asgi_module = f"{module.rpartition('.')[0]}.asgi"
        if asgi_module != ".asgi" and _module_exists(asgi_module):
            paths.append(f"{asgi_module}.application")
    return list(dict.fromkeys(paths))


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # its package does not exist
        return False


def _wraps_embedded_queue(application: object) -> bool:
    """Whether ``application``, or an application it wraps (``.app``), is
    EmbeddedQueue."""
    seen: set[int] = set()
    while application is not None and id(application) not in seen:
        if isinstance(application, EmbeddedQueue):
            return True
        seen.add(id(application))
        application = getattr(application, "app", None)
    return False


def _gunicorn_config_directories() -> list[Path]:
    """Where Gunicorn finds gunicorn.conf.py (the directory it starts in), and
    the project's BASE_DIR."""
    directories = [Path.cwd()]
    base_dir = getattr(settings, "BASE_DIR", None)
    if base_dir is not None:
        directories.append(Path(base_dir))
    return list(dict.fromkeys(d.resolve() for d in directories))


def _imports_gunicorn_hooks(config: Path) -> bool:
    try:
        tree = ast.parse(config.read_text(), filename=str(config))
    except (OSError, SyntaxError, ValueError):
        return False  # Gunicorn could not load it either
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.module == GUNICORN_HOOKS_MODULE
            or (
                node.module == GUNICORN_HOOKS_MODULE.rpartition(".")[0]
                and any(alias.name == "gunicorn" for alias in node.names)
            )
        ):
            return True
        if isinstance(node, ast.Import) and any(
            alias.name == GUNICORN_HOOKS_MODULE for alias in node.names
        ):
            return True
    return False
