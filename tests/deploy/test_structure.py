"""Structure of docker-compose.yml and deploy/: valid files, real references, real metrics."""

from __future__ import annotations

import re
import subprocess

import pytest

from intent_stream.cli import build_parser
from intent_stream.settings import Settings

from .files import (
    COMPOSE,
    DASHBOARDS_DIR,
    DEPLOY,
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    PROMETHEUS_SERIES,
    REPO,
    dashboard_panels,
    dashboard_queries,
    dashboards,
    exported_series,
    load_yaml,
    metric_names,
    prometheus_tools,
    rule_queries,
)

#: Published tags must name a release, not a moving target like ``latest`` or ``7``.
PINNED = re.compile(r"^[a-z0-9./_-]+:v?\d+\.\d+(\.\d+)?$")


@pytest.fixture(scope="module")
def compose():
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


@pytest.fixture(scope="module")
def workers(services):
    """The worker services (``worker-1``, ``worker-2`` ...): scaling out adds one."""
    return sorted((n for n in services if re.fullmatch(r"worker-\d+", n)), key=lambda n: int(n[7:]))


def test_compose_runs_every_part_of_the_deployment(services, workers):
    assert len(workers) >= 2, "the compose file shows scaling out with two workers or more"
    for name in workers:
        assert services[name]["command"][0] == "worker", name
    assert {
        "kafka",
        "redis",
        "topics",
        "collector",
        "prometheus",
        "grafana",
        "generator",
    } <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["generator"]["profiles"] == ["generator"]


def test_compose_depends_on_existing_services(services):
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_compose_images_are_pinned_or_built(services):
    for name, service in services.items():
        if "image" in service:
            assert PINNED.match(service["image"]), f"{name}: unpinned image {service['image']}"
        else:
            build = service["build"]
            assert (REPO / build["context"] / build["dockerfile"]).is_file(), name


def test_compose_mounts_exist_and_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_compose_publishes_ports_on_loopback_only(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} publicly"


def test_long_running_services_have_health_checks(services, workers):
    for name in ("kafka", "redis", *workers, "collector", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name


def _cli_has(command: str) -> bool:
    try:
        build_parser().parse_args([command, "--help"])
    except SystemExit as exc:  # --help exits 0; an unknown command exits 2
        return exc.code == 0
    return True


def test_the_image_copies_what_the_package_build_needs(compose):
    import tomllib

    dockerfile = REPO / compose["x-engine"]["build"]["dockerfile"]
    copied = set()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            copied.update(sources)
    assert copied, "the Dockerfile copies nothing"
    for source in copied:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {"pyproject.toml", project["readme"], *project.get("license-files", [])}
    assert needed <= copied, f"pip install . in the image needs {sorted(needed - copied)}"
    assert "intent_stream" in copied


def test_the_image_runs_as_an_unprivileged_user(compose):
    dockerfile = REPO / compose["x-engine"]["build"]["dockerfile"]
    users = [
        line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("USER ")
    ]
    assert users, "the engine's image sets no USER: it runs as root"
    assert users[-1] not in {"root", "0"}, "the engine's image runs as root"


def test_compose_runs_commands_the_cli_has(services, capsys):
    for name, service in services.items():
        if "build" in service and "entrypoint" not in service:
            command = service["command"][0]
            assert _cli_has(command), f"{name} runs {command}"
    # The generator's whole command line must parse, not only its first word.
    generator = services["generator"]["command"]
    assert generator[0] == "simulate"
    args = build_parser().parse_args(generator)
    assert args.cohorts == 0  # runs until the service is stopped


def test_compose_secrets_come_from_the_environment(services):
    env = services["collector"]["environment"]
    assert env["INTENT_STREAM_WRITE_KEYS"].startswith("${INTENT_STREAM_WRITE_KEYS:?")
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_prometheus_scrapes_the_compose_services_on_their_ports(services, workers):
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file(), rule_file
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    defaults = Settings()
    # Every worker, and nothing else, in the workers' job.
    assert targets["intent-stream-worker"] == [f"{w}:{defaults.web_port}" for w in workers]
    assert targets["intent-stream-collector"] == [f"collector:{defaults.collector_port}"]
    for job, hosts in targets.items():
        for target in hosts:
            host = target.rsplit(":", 1)[0]
            assert host == "localhost" or host in services, f"{job} scrapes unknown {host}"
    mounts = [v.split(":") for v in services["prometheus"]["volumes"]]
    assert ["./deploy/prometheus", "/etc/prometheus", "ro"] in mounts


def test_grafana_provisioning_matches_mounts_and_dashboards(services):
    datasources = load_yaml(GRAFANA_DIR / "provisioning/datasources/prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in services
    providers = load_yaml(GRAFANA_DIR / "provisioning/dashboards/intent-stream.yml")
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = providers["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (DASHBOARDS_DIR / home.rsplit("/", 1)[1]).is_file()

    uid = source["uid"]
    boards = dashboards()
    assert len(boards) >= 4
    assert len({d["uid"] for d in boards.values()}) == len(boards)
    for name, panel in dashboard_panels():
        assert panel["datasource"]["uid"] == uid, f"{name} / {panel['title']}"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, f"{name} / {panel['title']}"
            assert target["expr"].strip(), f"{name} / {panel['title']}"
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"


def test_every_metric_in_queries_is_exported_by_the_code():
    exported = exported_series() | PROMETHEUS_SERIES
    queries = dashboard_queries() + rule_queries()
    assert len(queries) > 30
    for query in queries:
        names = metric_names(query.expr)
        assert names, f"{query.where}: no metric in {query.expr!r}"
        assert names <= exported, f"{query.where}: not exported: {sorted(names - exported)}"


def test_no_file_in_deploy_mentions_a_metric_the_code_does_not_export():
    exported = exported_series()
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported}
    files = [COMPOSE, *(p for p in DEPLOY.rglob("*") if p.is_file())]
    for path in files:
        for name in re.findall(r"\bintent_stream_[a-z0-9_]+", path.read_text()):
            assert name in exported | families, f"{path.relative_to(REPO)} mentions {name}"


def test_promtool_accepts_the_config_and_rules():
    _, promtool = prometheus_tools()
    for args in (
        ["check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        ["check", "rules", str(PROMETHEUS_DIR / "rules.yml")],
    ):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_the_dependencies_before_it_copies_the_code(compose, tmp_path):
    import sys
    import tomllib

    text = (REPO / compose["x-engine"]["build"]["dockerfile"]).read_text()
    # The dependencies' layer comes before the code's, so a code change keeps it cached.
    assert text.index("-r /tmp/requirements.txt") < text.index("COPY intent_stream")
    assert text.index("-r /tmp/requirements.txt") < text.index("COPY README.md")
    # Its command, run by a shell as the build runs it, lists pyproject's dependencies.
    command = re.search(r'RUN (python -c ".*?")', text)
    assert command, "no RUN python -c line in the Dockerfile"
    shell = command.group(1).replace("python -c", f"{sys.executable} -c", 1)
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    out = subprocess.run(
        ["sh", "-c", shell], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert out.splitlines() == project["dependencies"]
