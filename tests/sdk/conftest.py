"""Shared fixtures: a local vault (an in-process one named by an env var, else a subprocess of
`$AKVFS_BIN local-vault`), its env file loaded into the environment, and an SDK client."""

import os
import shlex
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

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
             "--deletion-delay", "1s", *extra_args],
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


def sdk_client(variables):
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        vault_url=variables["AKVFS_VAULT_URL"],
        credential=DefaultAzureCredential(),
        verify_challenge_resource=False,
    )
