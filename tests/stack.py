"""The product's processes, started by a test on loopback ports of its own.

Fault tests stop, freeze, kill and restart these; they never touch the shared services:
- PrivateRedis: a throwaway redis-server;
- PrivatePostgres: a throwaway PostgreSQL cluster (initdb, as the postgres user when run as
  root), stopped, crashed and restarted at will;
- Worker: `celery -A config worker` (prefork, 2 processes);
- Web: gunicorn with the production settings module.
`manage(...)` runs a management command (or Python through `manage.py shell`) against them.
"""

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout, interval=0.2):
    """Poll `condition` until it returns something true; returns it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _tool(name):
    """A program of the project's virtualenv, else `python -m name`."""
    path = ROOT / ".venv" / "bin" / name
    return [str(path)] if path.exists() else [sys.executable, "-m", name]


def database_url(connection):
    """The URL of a Django connection's database (pytest-django's test database), for a
    product process started by a test."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{credentials}{host}:{db.get('PORT') or 5432}/{db['NAME']}"


def point_celery_at(url):
    """This process publishes to `url`: Celery read its broker URL once, at configuration."""
    from config.celery import app

    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    app.conf.broker_url = url


def base_env(**settings):
    """The environment of a product process: this one's, minus what tests set for themselves."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"TASKS_IN_PROCESS", "TEST_SERVICES", "DATABASE_URL", "REDIS_URL"}
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1", LOG_LEVEL="INFO")
    env.update({key: str(value) for key, value in settings.items()})
    return env


def manage(env, *args, code=None, timeout=120):
    """Run `manage.py args…` (or `manage.py shell -c code`, whose last output line is JSON)."""
    command = [sys.executable, str(ROOT / "manage.py"), *args]
    if code is not None:
        command = [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args) or 'shell'} failed:\n{done.stderr}")
    if code is not None:
        return json.loads(done.stdout.strip().splitlines()[-1])
    return done.stdout


class PrivateRedis:
    """A throwaway redis-server on a loopback port: stopped, frozen and restarted at will."""

    def __init__(self, directory):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = Path(directory)
        self.process = None

    def start(self):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        log = open(self.directory / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(command, cwd=self.directory, stdout=log, stderr=log)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        if not wait_until(lambda: self._answers(client), timeout=10, interval=0.05):
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    @staticmethod
    def _answers(client):
        with contextlib.suppress(redis.RedisError):
            return client.ping()
        return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case it was frozen
            self.process.terminate()
            self.process.wait(timeout=10)

    def freeze(self):
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.process.send_signal(signal.SIGCONT)

    def client(self):
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)


class PostgresMissing(RuntimeError):
    """initdb / pg_ctl are not installed here."""


class PrivatePostgres:
    """A PostgreSQL cluster of its own, in a temporary directory, on a loopback port.

    PostgreSQL refuses to run as root: as root, its programs run as the postgres user.
    """

    DATABASE = "reachable"

    def __init__(self):
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="reachable-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{self.DATABASE}"
        self.bin = self._find_bin()

    @staticmethod
    def _find_bin():
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
        if found:
            return Path(found[-1]).parent
        pg_ctl = shutil.which("pg_ctl")
        if pg_ctl:
            return Path(pg_ctl).parent
        raise PostgresMissing("needs PostgreSQL's server programs (initdb, pg_ctl)")

    def _run(self, *command, timeout=60):
        command = [str(self.bin / command[0]), *command[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def init(self):
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
            "-c", f'CREATE DATABASE "{self.DATABASE}"',
        )  # fmt: skip

    def _options(self):
        # No fsync: a crash here is a process crash, the kernel keeps what was written.
        return f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"

    def start(self):
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.log),
                  "-w", "start")  # fmt: skip

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def crash(self):
        """Stop at once, as on a crash: no checkpoint, connections cut; recovery on start."""
        self.stop(mode="immediate")

    def running(self):
        return (self.data / "postmaster.pid").exists()

    def destroy(self):
        with contextlib.suppress(Exception):
            if self.running():
                self.stop(mode="immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def _version(path):
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


class Process:
    """A product process in its own process group, its output in a log file."""

    ready_text = ""

    def __init__(self, command, env, log_path):
        self.command, self.env, self.log_path = command, env, Path(log_path)
        self.process = None
        self.offset = 0

    def start(self, timeout=60):
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115
        # Its own process group: a SIGKILL takes its children (pool, gunicorn workers) too.
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_until(self.ready, timeout=timeout, interval=0.2):
            self.stop()
            raise RuntimeError(f"{self.command[0]} did not become ready:\n{self.log()}")
        return self

    def ready(self):
        if self.process.poll() is not None:
            code = self.process.returncode
            raise RuntimeError(f"{self.command[0]} exited with {code}:\n{self.log()}")
        return self.ready_text in self.log()

    def log(self):
        return self.log_path.read_bytes()[self.offset :].decode(errors="replace")

    def kill(self):
        """SIGKILL the process and its children at once, as when a machine dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        # Children that outlived their parent must not keep a database open.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Worker(Process):
    """`celery -A config worker` with two pool processes."""

    ready_text = " ready."

    def __init__(self, env, log_path):
        command = _tool("celery") + ["-A", "config", "worker", "-l", "info"]
        command += ["--pool", "prefork", "-c", "2", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        super().__init__(command, env, log_path)


class Web(Process):
    """gunicorn with the project's config, on a loopback port."""

    ready_text = "Booting worker"

    def __init__(self, env, log_path, workers=2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(env, PORT=str(self.port), WEB_CONCURRENCY=str(workers))
        command = _tool("gunicorn") + ["-c", "config/gunicorn.py", "config.wsgi"]
        command += ["--bind", f"127.0.0.1:{self.port}"]
        super().__init__(command, env, log_path)
