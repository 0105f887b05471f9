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

from ymsync.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"

YMSYNC_SERVICES = ("worker-stocks", "worker-reports", "beat", "flower", "metrics")
WORKERS = {"worker-stocks": "stocks", "worker-reports": "reports"}
# Variables compose itself consumes (interpolation, project name), not handed to ymsync as such.
COMPOSE_ONLY = {"COMPOSE_PROJECT_NAME", "REDIS_PASSWORD", "REDIS_MAXMEMORY", "REDIS_PORT", "SANDBOX_PORT",
                "FLOWER_BIND", "METRICS_BIND", "FLOWER_BASIC_AUTH"}


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
def compose(raw, example_env) -> dict[str, Any]:
    return interpolate(raw, example_env)


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


def test_example_env_is_not_a_real_secret(example_env):
    assert "change-me" in example_env["REDIS_PASSWORD"] and "change-me" in example_env["FLOWER_BASIC_AUTH"]


# --- 1. the Compose Specification -------------------------------------------------------------------

def test_vendored_schema_is_the_compose_specification():
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    assert {"service", "healthcheck", "volume"} <= set(schema["definitions"])


@pytest.mark.parametrize("env", ["example", "minimal"])
def test_compose_file_validates_against_the_compose_spec(raw, example_env, schema_validator, env):
    # "minimal": only the two required variables set, every other default taken from the file.
    values = example_env if env == "example" else {"REDIS_PASSWORD": "pw", "FLOWER_BASIC_AUTH": "a:b"}
    errors = sorted(schema_validator.iter_errors(interpolate(raw, values)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_schema_check_has_teeth(compose, schema_validator):
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker-stocks"]["stop_grace_period"] = "75 seconds"
    broken["services"]["beat"]["restart_policy"] = "always"
    broken["services"]["redis"]["healthcheck"]["retries"] = "ten"
    messages = [e.message for e in schema_validator.iter_errors(broken)]
    assert len(messages) == 3, messages


@pytest.mark.parametrize("missing", ["REDIS_PASSWORD", "FLOWER_BASIC_AUTH"])
def test_required_variables_refuse_to_start_without_a_value(raw, example_env, missing):
    assert missing in required_variables(COMPOSE.read_text())
    with pytest.raises(MissingVariable, match=missing):
        interpolate(raw, {**example_env, missing: ""})


def test_every_variable_is_documented_in_env_example(example_env):
    used = referenced_variables(COMPOSE.read_text()) - {"HOSTNAME"}  # $$HOSTNAME: the container's
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
    assert "scale" not in service and "replicas" not in service.get("deploy", {})
    assert service["init"] is True
    assert f"{queue}@$HOSTNAME" in " ".join(service["healthcheck"]["test"])
    for dependency in ("redis", "sandbox"):
        assert service["depends_on"][dependency] == {"condition": "service_healthy"}
        assert "healthcheck" in services[dependency]


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
    assert command[:4] == ["celery", "-A", "tasks", "flower"]
    assert raw["services"]["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert option(command, "--basic_auth") is None, "credentials belong in the environment, not in argv"
    assert option(command, "--persistent") == "True"
    db = option(command, "--db")
    mounts = [v.split(":") for v in flower["volumes"]]
    assert any(src in raw["volumes"] and db.startswith(dst.rstrip("/") + "/") for src, dst in mounts)
    assert option(command, "--port") == "5555"
    assert any(str(p).endswith(":5555:5555") for p in flower["ports"])


def test_everyone_shares_the_password_protected_redis(raw):
    for name in YMSYNC_SERVICES:
        url = raw["services"][name]["environment"]["REDIS_URL"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/0", url), (name, url)


def test_sandbox_is_the_default_market(raw, example_env, services):
    assert command_of(services["sandbox"])[:6] == ["ymsync", "sandbox", "--host", "0.0.0.0", "--port", "8765"]
    for name in YMSYNC_SERVICES:
        env = services[name]["environment"]
        assert env["YM_API_URL"] == "http://sandbox:8765"
    real = interpolate(raw, {**example_env, "YM_API_URL": "https://api.partner.market.yandex.ru",
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
    """Every name ymsync/settings.py reads, recorded while it parses an environment."""
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
            assert var in known, f"{name}: {var} is read neither by ymsync/settings.py nor by workers/*.sh"


@pytest.mark.parametrize("name", YMSYNC_SERVICES)
def test_each_service_environment_is_accepted_by_ymsync(services, name):
    settings = load_settings({k: str(v) for k, v in services[name]["environment"].items()})
    assert settings.redis_url.startswith("redis://:")
    assert settings.api_url == "http://sandbox:8765"
    if name.startswith("worker-"):
        settings.require_credentials()


@pytest.mark.parametrize("name, queue", WORKERS.items())
def test_worker_scripts_exist_and_serve_their_queue(services, name, queue):
    import celeryconfig

    command = command_of(services[name])
    assert command == [f"workers/{queue}.sh"]
    script = ROOT / command[0]
    assert script.is_file() and os.access(script, os.X_OK), f"{script} missing or not executable"
    text = script.read_text()
    assert re.search(rf"exec celery -A tasks worker -Q {queue}\b", text)
    assert queue in {q.name for q in celeryconfig.task_queues}
    assert f"workers/{queue}.sh" in (ROOT / "Dockerfile").read_text(), "the image must carry the script"


def test_celery_commands(services):
    from tasks import app  # noqa: F401  (`-A tasks` must import)

    for name in ("beat", "flower"):
        assert command_of(services[name])[:4] == ["celery", "-A", "tasks", name]


@pytest.mark.parametrize("name", ["sandbox", "metrics"])
def test_ymsync_commands_exist_with_their_options(services, name):
    from ymsync.cli import main

    command = command_of(services[name])
    assert command[0] == "ymsync"
    sub = main.commands.get(command[1])
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
