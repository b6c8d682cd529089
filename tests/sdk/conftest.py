"""Shared fixtures: a local vault (an in-process one named by an env var, else a subprocess of
`$AKVFS_BIN local-vault`), its env file loaded into the environment, SDK clients, and a small
client of the vault's `/_akvfs/` admin endpoints (counters, faults, principals, reset)."""

import json
import os
import shlex
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def parse_env_file(path):
    variables = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        if words[0] == "export":
            words = words[1:]
        for word in words:
            name, _, value = word.partition("=")
            variables[name] = value
    return variables


def wait_for_file(path, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and "AKVFS_VAULT_URL" in path.read_text():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"local vault exited with {proc.returncode}")
        time.sleep(0.1)
    raise TimeoutError(f"{path} did not appear")


@contextmanager
def local_vault(given_env_var, extra_args=()):
    """Yields the variables of a running vault's env file, exported into os.environ.

    `given_env_var` names an environment variable holding the env file of a vault started by the
    caller (the Rust test harness); otherwise `$AKVFS_BIN local-vault` is started here."""
    given = os.environ.get(given_env_var)
    proc = None
    tmp = None
    if given:
        env_file = Path(given)
    else:
        binary = os.environ.get("AKVFS_BIN", str(ROOT / "target" / "debug" / "akvfs"))
        tmp = tempfile.TemporaryDirectory()
        env_file = Path(tmp.name) / "env"
        proc = subprocess.Popen(
            [binary, "local-vault", "--listen", "127.0.0.1:0", "--data", tmp.name,
             "--deletion-delay", "300ms", *extra_args],
            stdout=subprocess.DEVNULL,
        )
    saved = dict(os.environ)
    try:
        wait_for_file(env_file, proc)
        variables = parse_env_file(env_file)
        # Nothing but the env file may configure the credential.
        for name in list(os.environ):
            if name.startswith(("AZURE_", "MSI_", "IDENTITY_", "IMDS_")):
                del os.environ[name]
        os.environ.update(variables)
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
        yield variables
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        if tmp is not None:
            tmp.cleanup()


def sdk_client(variables, credential=None):
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        vault_url=variables["AKVFS_VAULT_URL"],
        credential=credential or DefaultAzureCredential(),
        verify_challenge_resource=False,
    )


def client_secret_credential(variables, client_id, client_secret):
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        variables["AKVFS_TENANT_ID"],
        client_id,
        client_secret,
        authority=variables["AKVFS_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )


class Admin:
    """The vault's `/_akvfs/` test controls (see src/local_vault/admin.rs)."""

    def __init__(self, variables):
        self.base = variables["AKVFS_VAULT_URL"].rstrip("/") + "/_akvfs/"
        self.token = variables["AKVFS_ADMIN_TOKEN"]
        self.context = ssl.create_default_context(cafile=variables["AKVFS_CA_FILE"])

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self.context)
        )
        with opener.open(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def counters(self):
        """operation -> {status (int): count}."""
        operations = self.call("GET", "counters")["operations"]
        return {
            op: {int(status): n for status, n in by_status.items()}
            for op, by_status in operations.items()
        }

    def reset_counters(self):
        self.call("POST", "counters/reset")

    def add_fault(self, **spec):
        self.call("POST", "faults", spec)

    def clear_faults(self):
        self.call("DELETE", "faults")

    def reset(self):
        """Wipe every secret, live and deleted."""
        self.call("POST", "reset")

    def add_principal(self, permissions):
        answer = self.call("POST", "principals", {"permissions": permissions})
        return answer["client_id"], answer["client_secret"]


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def vault_env():
    with local_vault("AKVFS_LOCAL_VAULT_ENV") as variables:
        yield variables


@pytest.fixture(scope="session")
def client(vault_env):
    return sdk_client(vault_env)


@pytest.fixture(scope="session")
def admin(vault_env):
    return Admin(vault_env)


@pytest.fixture(autouse=True)
def no_faults_left(request):
    """A test's fault rules never leak into the next test."""
    yield
    if "admin" in request.fixturenames:
        request.getfixturevalue("admin").clear_faults()
