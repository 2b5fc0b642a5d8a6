"""`cmake --install` (issue 12, item 3): the installed tree works on its own.

Installs the build under test into a temporary prefix (`--prefix`, no
DESTDIR) and checks the layout the image and the README rely on:
  - P/bin holds every role and every operator tool the build declares
    (binaries.txt kinds "role" and "tool"; test tools stay out), and each
    installed binary answers --version with the build's version;
  - P/share/nudgel/numbering.json and P/share/nudgel/examples/{example,
    gateways.example}.json are there and are the repository's files;
  - an installed binary that needs the numbering plan uses it from its own
    copy, not from the source tree: nudgel-enqueue, run from an empty working
    directory without any NUDGEL_* variable, tells Kenyan and Ugandan
    fixed-line numbers from mobile ones (only refused lines are given, so
    nothing reaches Kafka).
The numbering plan is compiled into every binary (CMakeLists.txt,
nudgel_embed); the installed copy is reference data for operators.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD_DIR, SOURCE_DIR

SHARE = Path("share") / "nudgel"


def declared(kinds):
    """Names of the binaries of the given kinds in BUILD_DIR/binaries.txt."""
    names = []
    for line in (BUILD_DIR / "binaries.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, kind, _doc, _path = line.split(None, 3)
        if kind in kinds:
            names.append(name)
    return names


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    p = tmp_path_factory.mktemp("prefix")
    out = subprocess.run(["cmake", "--install", str(BUILD_DIR), "--prefix", str(p)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return p


def test_every_role_and_tool_installed_and_runs(prefix):
    expected = declared({"role", "tool"})
    for name in ("nudgel-messages", "nudgel-webhooks", "nudgel-dispatch", "nudgel-receipts",
                 "nudgel-dlr", "nudgel-admin", "nudgel-enqueue"):
        assert name in expected, f"{name} is not declared as a role or tool"
    installed = sorted(f.name for f in (prefix / "bin").iterdir())
    assert sorted(expected) == installed, f"declared {sorted(expected)}, installed {installed}"
    versions = set()
    for name in installed:
        out = subprocess.run([str(prefix / "bin" / name), "--version"], capture_output=True,
                             text=True, timeout=30, cwd=prefix, env=clean_env())
        assert out.returncode == 0, f"{name} --version: {out.returncode} {out.stderr}"
        assert out.stdout.strip(), f"{name} --version printed nothing"
        versions.add(out.stdout.strip().split()[-1])
    assert len(versions) == 1, f"installed binaries disagree on the version: {versions}"


def test_data_files_installed(prefix):
    for rel, src in ((SHARE / "numbering.json", "config/numbering.json"),
                     (SHARE / "examples" / "example.json", "config/example.json"),
                     (SHARE / "examples" / "gateways.example.json",
                      "config/gateways.example.json")):
        installed = prefix / rel
        assert installed.is_file(), f"{rel} not installed"
        assert installed.read_bytes() == (SOURCE_DIR / src).read_bytes()
        json.loads(installed.read_text())


def clean_env():
    """The environment without NUDGEL_* variables (no config file, no overrides)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NUDGEL_")}


def test_installed_enqueue_uses_the_numbering_plan(prefix, bootstrap, tmp_path):
    # Fixed-line numbers (Nairobi 020, Kampala 041) are refused by the plan's number
    # types, in national and international form. Only refused lines: nothing is produced.
    lines = [
        {"tenant_id": "install-test", "channel": "sms", "to": "020 2222222", "country": "KE",
         "body": "x"},
        {"tenant_id": "install-test", "channel": "sms", "to": "+256 41 4000000", "body": "x"},
    ]
    env = clean_env()
    out = subprocess.run(
        [str(prefix / "bin" / "nudgel-enqueue"), "--topic", "messages", "--bootstrap", bootstrap,
         "--quiet", "--json"],
        input="".join(json.dumps(line) + "\n" for line in lines), capture_output=True,
        text=True, timeout=60, cwd=tmp_path, env=env)
    assert out.returncode == 1, out.stderr
    summary = json.loads(out.stdout)
    assert summary["rejected"] == 2 and summary["sent"] == 0, summary
    reasons = {p["line"]: (p["field"], p["reason"]) for p in summary["problems"]}
    assert reasons[1][0] == "to" and "KE fixed-line number" in reasons[1][1], reasons
    assert reasons[2][0] == "to" and "UG fixed-line number" in reasons[2][1], reasons
