"""A configuration error at start-up names the variable and the rule, never the value: values may be secrets or
URLs carrying tokens. The real entry points run as subprocesses with bad values in their environment; the settings
classes' own errors are unit-tested in tests/unit/test_settings_secrets.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import REPO

SECRET = "s3cr3t-Zq8Xw1-pq"  # short: pydantic shortens long values in the middle, which would hide a leak
TOKEN_URL = f"http://h.example/?token={SECRET}"  # http: refused, so the whole URL is in error

# (what the variables mean, the environment, the entry point): every case is a start-up refusal.
CASES = {
    "hook-previous-secret": (
        # Required settings missing: pydantic would print all the input there is, this secret included.
        {"VIDGEN_HOOK_PREVIOUS_SECRET": SECRET},
        "producer_examples.product_hook",
    ),
    "notifier-webhook": (
        {"VIDGEN_NOTIFIER_WEBHOOKS": f'{{"shop-1": {{"url": "{TOKEN_URL}", "secret": "{SECRET}"}}}}'},
        "producer_examples.notifier",
    ),
    "worker-misplaced-secret": (
        {"VIDGEN_KAFKA_SASL_MECHANISM": SECRET},  # e.g. a shifted line in an env file
        "consumer",
    ),
    # A JSON setting that is not JSON: pydantic-settings raises SettingsError, not ValidationError.
    "hook-templates-not-json": (
        {"VIDGEN_HOOK_SECRET": "x" * 32, "VIDGEN_HOOK_TEMPLATES": f'{{"shop": "{SECRET}'},
        "producer_examples.product_hook",
    ),
    "notifier-webhooks-not-json": (
        {"VIDGEN_NOTIFIER_WEBHOOKS": f'{{"shop-1": {{"secret": "{SECRET}"'},
        "producer_examples.notifier",
    ),
}


def _environment(variables: dict[str, str]) -> dict[str, str]:
    """This interpreter's needs and the case's variables, nothing else from the test run."""
    keep = {name: value for name, value in os.environ.items() if name in {"PATH", "HOME", "LANG", "LD_LIBRARY_PATH"}}
    return {**keep, **variables}


@pytest.mark.parametrize("case", sorted(CASES))
def test_start_up_refusal_names_the_setting_but_never_prints_its_value(case: str) -> None:
    variables, module = CASES[case]
    arguments = ["run"] if module == "consumer" else []

    done = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        env=_environment(variables),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2, done.stderr[-2000:]
    assert "invalid configuration" in done.stderr
    assert SECRET not in done.stderr and SECRET not in done.stdout
    assert "token=" not in done.stderr
    assert "Traceback" not in done.stderr
