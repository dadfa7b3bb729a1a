"""Development sessions. Run them through ./dev, which installs nox itself.

    ./dev tests      the test suite: SQLite and PostgreSQL, Django 6.0 and 6.1
    ./dev lint       ruff
    ./dev demo       the example shop on SQLite, the queue inside uvicorn
    ./dev bench      the benchmark, both databases side by side
    ./dev chaos      SIGKILL web workers and cut database connections mid-drain

Arguments after ``--`` go to the underlying tool: ``./dev tests -- -k signals``.
"""

import os
import socket
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# Each supported Django, on the oldest and newest Python it is tested with.
DJANGO_MATRIX = [("3.12", "6.0"), ("3.13", "6.1")]
POSTGRES = (
    os.environ.get("PGHOST", "127.0.0.1"),
    int(os.environ.get("PGPORT", "5432")),
)


DEMO_USER = (
    "from django.contrib.auth.models import User; "
    "User.objects.filter(username='admin').exists() "
    "or User.objects.create_superuser('admin', password='admin')"
)


def install(session: nox.Session, *groups: str) -> None:
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, *groups))


@nox.session
@nox.parametrize("database", ["sqlite", "postgres"])
@nox.parametrize(("python", "django"), DJANGO_MATRIX)
def tests(session: nox.Session, database: str, django: str) -> None:
    """Run the test suite on one database and one Django version."""
    if database == "postgres":
        require_postgres(session)
    install(session, "test", f"django{django.replace('.', '')}")
    # pytest exits with 5 when no test ran, which fails the session.
    session.run("pytest", *session.posargs, env={"DBQUEUE_TEST_DATABASE": database})


@nox.session(python="3.13")
def lint(session: nox.Session) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.13")
def demo(session: nox.Session) -> None:
    """Run the example shop on SQLite, the queue inside uvicorn: http://127.0.0.1:8000/."""
    install(session, "django61", "servers")
    session.chdir(ROOT / "example_project")
    session.run("python", "manage.py", "migrate", "--verbosity", "0")
    # A user for the admin and the queue's dashboard: admin / admin.
    session.run("python", "manage.py", "shell", "--no-imports", "-c", DEMO_USER)
    session.log("The example shop runs at http://127.0.0.1:8000/ (Ctrl-C stops it);")
    session.log(
        "its queue dashboard at /queue/ and the admin at /admin/ (admin/admin)."
    )
    session.run(
        "uvicorn",
        "example.asgi:application",
        *("--host", "127.0.0.1", "--port", "8000"),
        *session.posargs,
    )


@nox.session(python="3.13")
def bench(session: nox.Session) -> None:
    """Measure enqueue and drain rates on SQLite and PostgreSQL."""
    require_postgres(session)
    install(session, "django61", "bench")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python="3.13")
@nox.parametrize("database", ["sqlite", "postgres"])
def chaos(session: nox.Session, database: str) -> None:
    """SIGKILL web workers and cut database connections while 2,000 jobs drain."""
    if database == "postgres":
        require_postgres(session)
    install(session, "django61", "bench")
    session.run("python", "chaos/run.py", "--database", database, *session.posargs)


def require_postgres(session: nox.Session) -> None:
    try:
        socket.create_connection(POSTGRES, timeout=3).close()
    except OSError:
        session.error(
            f"PostgreSQL is not reachable at {POSTGRES[0]}:{POSTGRES[1]}. Start it "
            "(see README, 'Running the tests') or set PGHOST/PGPORT/PGUSER."
        )
