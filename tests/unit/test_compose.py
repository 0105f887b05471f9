"""docker-compose.yml, Dockerfile and .env.example, checked without a Docker engine.

1. The compose file, interpolated the way ``docker compose`` does it (from .env.example),
   validates against the Compose Specification's JSON schema (vendored in tests/data, see
   tests/data/README.md; nothing is fetched at test time).
2. The operational rules the deployment promises: Redis durability and noeviction, a password,
   healthchecks, scalable workers, exactly one beat, Flower behind basic auth, grace periods.
3. Cross-references: scripts and commands exist, queues exist, every variable handed to ymsync
   is one ymsync reads, and the environment each service gets is one ymsync accepts.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import pytest
import yaml

from ymsync.config.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
RABBITMQ_OVERRIDE = ROOT / "docker-compose.rabbitmq.yml"
README = ROOT / "README.md"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"

YMSYNC_SERVICES = ("worker-stocks", "worker-reports", "beat", "flower", "metrics")
WORKERS = {"worker-stocks": "stocks", "worker-reports": "reports"}
# Variables compose itself consumes (interpolation, project name), not handed to ymsync as such.
COMPOSE_ONLY = {"COMPOSE_PROJECT_NAME", "REDIS_PASSWORD", "REDIS_MAXMEMORY", "REDIS_PORT", "SANDBOX_PORT",
                "FLOWER_BIND", "METRICS_BIND", "FLOWER_BASIC_AUTH", "FLOWER_HOST_PORT", "METRICS_HOST_PORT",
                "YM_STOCKS_WORKERS", "YM_REPORTS_WORKERS", "RABBITMQ_PASSWORD"}
# What a newcomer sets after `cp .env.example .env` (the example leaves both empty on purpose).
SECRETS = {"REDIS_PASSWORD": "0123abcd", "FLOWER_BASIC_AUTH": "admin:4567ef"}


# --- compose's own rules, reimplemented for the test ---------------------------------------------

class MissingVariable(Exception):
    pass


_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, ${VAR:+r}."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m[1]:
            return "$"
        name = m[2] or m[5]
        op, arg = m[3], m[4] or ""
        present, val = name in env, env.get(name, "")
        if op in (":-", "-"):
            return val if (val if op == ":-" else present) else arg
        if op in (":?", "?"):
            if not (val if op == ":?" else present):
                raise MissingVariable(f"required variable {name} is missing a value: {arg}")
            return val
        if op in (":+", "+"):
            return arg if (val if op == ":+" else present) else ""
        return val

    return _VAR.sub(one, value)


def typed(compose: dict[str, Any]) -> dict[str, Any]:
    """Compose converts interpolated strings of numeric fields back to numbers (replicas, scale)."""
    for service in compose.get("services", {}).values():
        deploy = service.get("deploy") or {}
        if isinstance(deploy.get("replicas"), str) and deploy["replicas"].isdigit():
            deploy["replicas"] = int(deploy["replicas"])
    return compose


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``docker compose -f base -f override``: mappings merge key by key, the override wins."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def referenced_variables(text: str) -> set[str]:
    return {m[2] or m[5] for m in _VAR.finditer(text) if not m[1]}


def required_variables(text: str) -> set[str]:
    return {m[2] for m in _VAR.finditer(text) if m[3] in (":?", "?")}


def parse_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not NAME=VALUE: {line!r}"
            env[name.strip()] = value.strip()
    return env


_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")


def seconds(duration: str) -> float:
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    assert _DURATION.match(duration), duration
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", duration))


format_checker = jsonschema.FormatChecker()


@format_checker.checks("duration")
def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or bool(_DURATION.match(value))


@format_checker.checks("ports")
def _is_port(value: object) -> bool:
    if isinstance(value, int):
        return 0 < value < 65536
    pattern = r"^(?:(?:\[?[0-9a-fA-F.:]+\]?:)?(?:\d+(?:-\d+)?)?:)?\d+(?:-\d+)?(?:/(?:tcp|udp|sctp))?$"
    return bool(re.match(pattern, str(value)))


@format_checker.checks("expose")
def _is_expose(value: object) -> bool:
    return bool(re.match(r"^\d+(?:-\d+)?(?:/(?:tcp|udp|sctp))?$", str(value)))


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # YAML anchors and << merges resolved


@pytest.fixture(scope="module")
def configured_env(example_env) -> dict[str, str]:
    return {**example_env, **SECRETS}


@pytest.fixture(scope="module")
def compose(raw, configured_env) -> dict[str, Any]:
    return typed(interpolate(raw, configured_env))


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/")
    cls = jsonschema.Draft201909Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=format_checker)


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def option(command: list[str], name: str) -> str | None:
    for i, arg in enumerate(command):
        if arg == name and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def test_example_env_has_no_usable_secret_so_compose_refuses_a_plain_copy(raw, example_env):
    assert example_env["REDIS_PASSWORD"] == "" and example_env["FLOWER_BASIC_AUTH"] == ""
    with pytest.raises(MissingVariable, match="REDIS_PASSWORD|FLOWER_BASIC_AUTH"):
        interpolate(raw, example_env)


# --- 1. the Compose Specification -------------------------------------------------------------------

def test_vendored_schema_is_the_compose_specification():
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    assert {"service", "healthcheck", "volume"} <= set(schema["definitions"])


@pytest.mark.parametrize("env", ["example", "minimal"])
def test_compose_file_validates_against_the_compose_spec(raw, configured_env, schema_validator, env):
    # "minimal": only the two required variables set, every other default taken from the file.
    values = configured_env if env == "example" else {"REDIS_PASSWORD": "pw", "FLOWER_BASIC_AUTH": "a:b"}
    errors = sorted(schema_validator.iter_errors(typed(interpolate(raw, values))), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_schema_check_has_teeth(compose, schema_validator):
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker-stocks"]["stop_grace_period"] = "75 seconds"
    broken["services"]["beat"]["restart_policy"] = "always"
    broken["services"]["redis"]["healthcheck"]["retries"] = "ten"
    messages = [e.message for e in schema_validator.iter_errors(broken)]
    assert len(messages) == 3, messages


@pytest.mark.parametrize("missing", ["REDIS_PASSWORD", "FLOWER_BASIC_AUTH"])
def test_required_variables_refuse_to_start_without_a_value(raw, configured_env, missing):
    assert missing in required_variables(COMPOSE.read_text())
    with pytest.raises(MissingVariable, match=missing):
        interpolate(raw, {**configured_env, missing: ""})
    with pytest.raises(MissingVariable, match=missing):
        interpolate(raw, {k: v for k, v in configured_env.items() if k != missing})


def test_every_variable_is_documented_in_env_example(example_env):
    text = COMPOSE.read_text() + RABBITMQ_OVERRIDE.read_text()
    used = referenced_variables(text) - {"HOSTNAME"}  # $$HOSTNAME: the container's
    assert used - set(example_env) == set(), "compose uses variables .env.example does not document"
    assert set(example_env) - used - {"COMPOSE_PROJECT_NAME"} == set(), ".env.example documents unused variables"


# --- 2. operational rules ---------------------------------------------------------------------------

def test_redis_durable_noeviction_password_volume(raw, services):
    command = command_of(services["redis"])
    assert command[0] == "redis-server"
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--appendfsync") == "everysec"
    save = option(command, "--save")
    assert save and re.fullmatch(r"(\d+ \d+)( \d+ \d+)*", save), "RDB snapshots must stay on next to the AOF"
    assert option(command, "--maxmemory-policy") == "noeviction"
    assert "${REDIS_PASSWORD:?" in option(command_of(raw["services"]["redis"]), "--requirepass")
    volumes = services["redis"]["volumes"]
    assert any(v.split(":")[0] in raw["volumes"] and v.split(":")[1] == "/data" for v in volumes)
    check = " ".join(services["redis"]["healthcheck"]["test"])
    assert "redis-cli" in check and "-a" in check and "ping" in check
    # A host port on Redis, if any, is loopback only.
    assert all(p.startswith("127.0.0.1:") for p in services["redis"].get("ports", []))


@pytest.mark.parametrize("name", ["redis", "sandbox", "worker-stocks", "worker-reports", "flower", "metrics"])
def test_healthchecks(services, name):
    check = services[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and not check.get("disable")
    assert seconds(check["timeout"]) < seconds(check["interval"])


@pytest.mark.parametrize("name, queue", WORKERS.items())
def test_workers_scalable(services, name, queue):
    service = services[name]
    assert "container_name" not in service, "container_name breaks --scale"
    assert not service.get("ports"), "a fixed host port breaks --scale"
    assert service["init"] is True
    assert f"{queue}@$HOSTNAME" in " ".join(service["healthcheck"]["test"])
    for dependency in ("redis", "sandbox"):
        assert service["depends_on"][dependency] == {"condition": "service_healthy"}
        assert "healthcheck" in services[dependency]


@pytest.mark.parametrize("name, variable", [("worker-stocks", "YM_STOCKS_WORKERS"),
                                            ("worker-reports", "YM_REPORTS_WORKERS")])
def test_replica_counts_live_in_the_file_so_later_commands_keep_them(raw, configured_env, name, variable):
    """`--scale` is undone by the next `up`; a count from .env is what every `up` starts from."""
    assert raw["services"][name]["deploy"]["replicas"] == f"${{{variable}:-1}}"
    assert "scale" not in raw["services"][name]
    assert typed(interpolate(raw, configured_env))["services"][name]["deploy"]["replicas"] == 1
    three = typed(interpolate(raw, {**configured_env, variable: "3"}))
    assert three["services"][name]["deploy"]["replicas"] == 3


def test_stop_grace_periods(services):
    defaults = load_settings({})
    request_s = defaults.connect_timeout + defaults.read_timeout
    assert seconds(services["worker-stocks"]["stop_grace_period"]) >= request_s + 5
    assert seconds(services["worker-reports"]["stop_grace_period"]) >= request_s + 5
    for name in YMSYNC_SERVICES + ("redis",):
        assert "stop_grace_period" in services[name], name


def test_exactly_one_beat_with_its_schedule_on_a_volume(raw, services):
    beats = [name for name, s in services.items() if "beat" in command_of(s)]
    assert beats == ["beat"]
    beat = services["beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1 and beat.get("scale", 1) == 1
    schedule = option(command_of(beat), "--schedule") or option(command_of(beat), "-s")
    mounts = [v.split(":") for v in beat["volumes"]]
    assert any(src in raw["volumes"] and schedule.startswith(dst.rstrip("/") + "/") for src, dst in mounts)


def test_flower_auth_persistence_port(raw, services):
    flower = services["flower"]
    command = command_of(flower)
    assert command[:4] == ["celery", "-A", "ymsync_celery.tasks", "flower"]
    assert raw["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert option(command, "--basic_auth") is None, "credentials belong in the environment, not in argv"
    assert option(command, "--persistent") == "True"
    db = option(command, "--db")
    mounts = [v.split(":") for v in flower["volumes"]]
    assert any(src in raw["volumes"] and db.startswith(dst.rstrip("/") + "/") for src, dst in mounts)
    assert option(command, "--port") == "5555"
    assert any(str(p).endswith(":5555:5555") for p in flower["ports"])
    moved = interpolate(raw, {**SECRETS, "FLOWER_HOST_PORT": "15555"})["services"]["flower"]["ports"]
    assert moved == ["127.0.0.1:15555:5555"]


def test_everyone_shares_the_password_protected_redis(raw):
    for name in YMSYNC_SERVICES:
        url = raw["services"][name]["environment"]["REDIS_URL"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/0", url), (name, url)


def test_sandbox_keeps_its_stock_on_a_volume(raw, services):
    command = command_of(services["sandbox"])
    state = option(command, "--state-file")
    assert state and state.startswith("/data/")
    assert any(v.split(":")[0] in raw["volumes"] and v.split(":")[1] == "/data" for v in services["sandbox"]["volumes"])


def test_sandbox_is_the_default_market(raw, configured_env, services):
    assert command_of(services["sandbox"])[:6] == ["ymsync", "sandbox", "--host", "0.0.0.0", "--port", "8765"]
    for name in YMSYNC_SERVICES:
        env = services[name]["environment"]
        assert env["YM_API_URL"] == "http://sandbox:8765"
    real = interpolate(raw, {**configured_env, "YM_API_URL": "https://api.partner.market.yandex.ru",
                             "YM_API_KEY": "", "YM_OAUTH_TOKEN": "tok"})
    env = real["services"]["worker-stocks"]["environment"]
    assert env["YM_API_URL"] == "https://api.partner.market.yandex.ru"
    assert load_settings(env).credentials.headers() == {"Authorization": "Bearer tok"}


def test_metrics_is_optional(services):
    assert services["metrics"]["profiles"] == ["metrics"]
    assert command_of(services["metrics"])[:2] == ["ymsync", "metrics"]
    assert option(command_of(services["metrics"]), "--port") == "9808"


# --- 3. cross-references ----------------------------------------------------------------------------

def settings_variable_names() -> set[str]:
    """Every name ymsync/config/settings.py reads, recorded while it parses an environment."""
    seen: set[str] = set()

    class Recording(dict):
        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            seen.add(key)
            return super().__getitem__(key)

        def __contains__(self, key):
            seen.add(key)
            return super().__contains__(key)

    load_settings(Recording())
    return seen


def worker_script_variables() -> set[str]:
    return {name for path in (ROOT / "workers").glob("*.sh") for name in referenced_variables(path.read_text())}


def test_settings_recorder_sees_known_names():
    names = settings_variable_names()
    assert {"REDIS_URL", "YM_API_URL", "YM_API_KEY", "YM_QUOTA_UPDATE_STOCKS", "YM_RECONCILE_CAMPAIGNS"} <= names


@pytest.mark.parametrize("name", YMSYNC_SERVICES + ("sandbox",))
def test_every_variable_handed_to_ymsync_is_one_it_reads(raw, name):
    known = settings_variable_names() | worker_script_variables()
    environment = raw["services"][name].get("environment", {})
    for var in environment:
        if var.startswith("FLOWER_"):
            from flower.options import options as flower_options

            # flower.command.apply_env_options: FLOWER_BASIC_AUTH -> option basic_auth (basic-auth)
            option_name = var[len("FLOWER_"):].lower()
            assert {option_name, option_name.replace("_", "-")} & set(flower_options._options), var
        else:
            assert var in known, f"{name}: {var} is read neither by ymsync/config/settings.py nor by workers/*.sh"


@pytest.mark.parametrize("name", YMSYNC_SERVICES)
def test_each_service_environment_is_accepted_by_ymsync(services, name):
    settings = load_settings({k: str(v) for k, v in services[name]["environment"].items()})
    assert settings.redis_url.startswith("redis://:")
    assert settings.api_url == "http://sandbox:8765"
    if name.startswith("worker-"):
        settings.require_credentials()


@pytest.mark.parametrize("name, queue", WORKERS.items())
def test_worker_scripts_exist_and_serve_their_queue(services, name, queue):
    from ymsync_celery import celeryconfig

    command = command_of(services[name])
    assert command == [f"workers/{queue}.sh"]
    script = ROOT / command[0]
    assert script.is_file() and os.access(script, os.X_OK), f"{script} missing or not executable"
    text = script.read_text()
    assert re.search(rf"exec celery -A ymsync_celery\.tasks worker -Q {queue}\b", text)
    assert queue in {q.name for q in celeryconfig.task_queues}
    assert f"workers/{queue}.sh" in (ROOT / "Dockerfile").read_text(), "the image must carry the script"


def test_celery_commands(services):
    from ymsync_celery.tasks import app  # noqa: F401  (the installed name `-A` is given must import)

    for name in ("beat", "flower"):
        assert command_of(services[name])[:4] == ["celery", "-A", "ymsync_celery.tasks", name]
    for name in WORKERS:
        assert "celery -A ymsync_celery.tasks inspect ping" in " ".join(services[name]["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["sandbox", "metrics"])
def test_ymsync_commands_exist_with_their_options(services, name):
    import click

    from ymsync.cli import main

    command = command_of(services[name])
    assert command[0] == "ymsync"
    sub = main.get_command(click.Context(main), command[1])  # the CLI imports a command's module on first use
    if sub is None and command[1] == "metrics":
        pytest.skip("`ymsync metrics` is not in this tree yet (being written alongside)")
    assert sub is not None, f"no `ymsync {command[1]}` command"
    declared = {opt for param in sub.params for opt in getattr(param, "opts", [])}
    used = {arg.split("=")[0] for arg in command[2:] if arg.startswith("--")}
    assert used <= declared, f"`ymsync {command[1]}` has no option {used - declared}"


# --- the image --------------------------------------------------------------------------------------

def dockerfile_stages() -> list[list[str]]:
    lines = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text()).splitlines()
    stages: list[list[str]] = []
    for line in (line.strip() for line in lines):
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_slim_multistage_non_root():
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)[1]
    assert re.fullmatch(r"python:3\.1[1-9][.\d]*-slim(-\w+)?", base), base
    build, final = dockerfile_stages()[0], dockerfile_stages()[-1]
    assert any("pip install ." in line for line in build)
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final image must not run as root"
    assert any(line.startswith("COPY --from=build") for line in final)
    final_text = " ".join(final)
    for tool in ("build-essential", "gcc", "apt-get install", "pip install"):
        assert tool not in final_text, f"{tool} in the final stage"


def test_dockerfile_copies_exist_and_survive_dockerignore():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) for p in patterns)

    for stage in dockerfile_stages():
        for line in stage:
            if line.startswith("COPY ") and "--from=" not in line:
                sources = [a for a in line.split()[1:-1] if not a.startswith("--")]
                for source in sources:
                    assert (ROOT / source).exists(), source
                    assert not ignored(source), f"{source} is copied but .dockerignore drops it"
    for secret in (".env", ".git", ".venv", "tests"):
        assert ignored(secret), f".dockerignore must keep {secret} out of the build context"


def test_dockerfile_builds_without_buildkit_and_ids_match():
    """The classic builder knows no `COPY --chmod`; a `# syntax=` line makes BuildKit pull a frontend."""
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    assert not re.search(r"^\s*(COPY|ADD)\b[^\n]*--(chmod|chown|link|parents|exclude)", text, re.M)
    assert not re.search(r"^\s*RUN\s+--", text, re.M), "RUN --mount/--network need BuildKit"
    final = " ".join(dockerfile_stages()[-1])
    assert re.search(r"groupadd [^&]*--gid 10001 ymsync", final)
    assert re.search(r"useradd [^&]*--uid 10001 --gid 10001 ", final)
    assert re.search(r"^USER 10001:10001$", text, re.M)


# --- README against compose -----------------------------------------------------------------------

# Variables of README's Configuration table a container does not take from .env, and why.
NOT_PASSED_THROUGH = {
    "REDIS_URL": "composed from REDIS_PASSWORD",
    "YM_REPORTS_DIR": "fixed to /app/reports, the reports volume",
    "YM_OPENAPI_SPEC": "tests only",
    "YM_SANDBOX_SPEC_CHECK": "the sandbox's test mode, set by the test suite",
    "YM_SANDBOX_SPEC_VIOLATIONS": "the sandbox's test mode, set by the test suite",
    "FLOWER_PORT": "Flower's options are set on its command line",
    "FLOWER_PERSISTENT": "Flower's options are set on its command line",
    "FLOWER_DB": "Flower's options are set on its command line",
    # The compose stack runs one Redis of its own (REDIS_URL is composed from REDIS_PASSWORD): a
    # cluster's settings would have nothing to apply to.
    "YM_REDIS_CLUSTER": "compose's state is its own single Redis",
    "YM_REDIS_ACK_REPLICAS": "compose's state is its own single Redis",
    "YM_REDIS_ACK_TIMEOUT_MS": "compose's state is its own single Redis",
    "YM_REDIS_FAILOVER_S": "compose's state is its own single Redis",
}


def readme_configuration_variables() -> set[str]:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_readme_table_is_read():
    names = readme_configuration_variables()
    assert {"YM_DOWNLOAD_HOSTS", "YM_MAX_REPORT_BYTES", "CELERY_BROKER_URL", "YM_STOCKS_CONCURRENCY"} <= names


def test_every_documented_variable_is_passed_through(raw, configured_env):
    """README says every variable of its table reaches the containers from .env: hold it to that."""
    worker_env = raw["services"]["worker-stocks"]["environment"]
    reports_env = raw["services"]["worker-reports"]["environment"]
    flower_env = raw["services"]["flower"]["environment"]
    for name in sorted(readme_configuration_variables()):
        if name in NOT_PASSED_THROUGH or name in COMPOSE_ONLY:
            continue
        given = {**worker_env, **reports_env, **flower_env}.get(name)
        assert given is not None, f"README documents {name} but compose does not pass it"
        assert re.fullmatch(rf"\$\{{{name}:-[^}}]*\}}", str(given)), f"{name} is not taken from .env: {given!r}"
        # And it arrives: a value set in .env is the value the container gets.
        probe = interpolate(raw, {**configured_env, name: "probe-value"})["services"]
        assert "probe-value" in {probe[s]["environment"].get(name) for s in ("worker-stocks", "worker-reports", "flower")}


# --- the RabbitMQ variant -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def with_rabbitmq(raw, configured_env) -> dict[str, Any]:
    override = yaml.safe_load(RABBITMQ_OVERRIDE.read_text())
    return typed(interpolate(merged(raw, override), {**configured_env, "RABBITMQ_PASSWORD": "feed42"}))


def test_rabbitmq_variant_validates_and_moves_only_the_broker(with_rabbitmq, schema_validator):
    errors = list(schema_validator.iter_errors(with_rabbitmq))
    assert not errors, [e.message for e in errors]
    services = with_rabbitmq["services"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:")
    for name in YMSYNC_SERVICES:
        env = services[name]["environment"]
        settings = load_settings({k: str(v) for k, v in env.items()})
        assert settings.broker_url == "amqp://ymsync:feed42@rabbitmq:5672/ymsync", name
        assert settings.redis_url.startswith("redis://:") and settings.redis_url.endswith("@redis:6379/0")
        assert settings.result_backend == settings.redis_url  # chords need a Redis result backend
        assert services[name]["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}  # kept from the base
    assert services["rabbitmq"]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")


def test_rabbitmq_variant_refuses_to_start_without_its_password(raw, configured_env):
    override = yaml.safe_load(RABBITMQ_OVERRIDE.read_text())
    with pytest.raises(MissingVariable, match="RABBITMQ_PASSWORD"):
        interpolate(merged(raw, override), configured_env)


def test_default_stack_keeps_one_redis_for_everything(services):
    assert "rabbitmq" not in services
    settings = load_settings({k: str(v) for k, v in services["worker-stocks"]["environment"].items()})
    assert settings.broker_url == settings.result_backend == settings.redis_url
