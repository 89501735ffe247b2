"""The services' ACL rule lists every command the store sends, and none of the dangerous ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codeengine.store.acl import (
    RECORDS_ACL_RULE,
    RECORDS_COMMANDS,
    RECORDS_KEYS,
    SCRIPT_COMMANDS,
    SERVICE_ACL_RULE,
    SERVICE_COMMANDS,
)

STORE = Path(__file__).resolve().parents[2] / "codeengine" / "store"


def test_every_command_the_lua_scripts_call_is_allowed() -> None:
    called = set()
    for script in (STORE / "lua").glob("*.lua"):
        text = script.read_text()
        called |= {m.lower() for m in re.findall(r"redis\.p?call\(\s*['\"](\w+)['\"]", text)}
        # A command chosen at run time would escape this check: the scripts name theirs.
        assert not re.search(r"redis\.p?call\(\s*[^'\"\s]", text), script.name
    assert called, "the scripts were found"
    assert called <= set(SCRIPT_COMMANDS), called - set(SCRIPT_COMMANDS)


def test_every_command_the_store_code_names_is_allowed() -> None:
    named = set()
    for module in [*STORE.glob("*.py"), *(STORE / "adapters").glob("*.py")]:
        if module.name in {"acl.py", "security.py"}:  # the rule itself; reply prefixes
            continue
        for word in re.findall(r"[\"']([A-Z]{3,})[\"']", module.read_text()):
            named.add(word.lower())
    # Words in capitals that are not commands: reply prefixes and options.
    not_commands = {
        "ask", "busy", "clusterdown", "count", "loading", "masterdown", "match", "noscript",
        "readonly", "tryagain", "load", "auth", "revoke", "signatures",
    }  # fmt: skip
    missing = named - not_commands - {c.split("|")[0] for c in SERVICE_COMMANDS}
    assert not missing, f"add to codeengine/store/acl.py or explain: {sorted(missing)}"


@pytest.mark.parametrize(
    "command",
    ["flushall", "flushdb", "config", "keys", "debug", "monitor", "shutdown", "acl", "module",
     "client", "eval", "script|flush", "cluster|failover", "save", "replicaof", "migrate"],
)  # fmt: skip
def test_no_dangerous_command_is_allowed(command: str) -> None:
    assert command not in SERVICE_COMMANDS
    assert f"+{command} " not in SERVICE_ACL_RULE + " "
    assert "+@" not in SERVICE_ACL_RULE, "no whole category is let in"


def test_the_rule_starts_from_nothing() -> None:
    assert SERVICE_ACL_RULE.startswith("resetchannels ~* -@all +")
    assert len(SERVICE_COMMANDS) == len(set(SERVICE_COMMANDS))


def test_the_operations_guide_shows_the_rule() -> None:
    guide = (STORE.parents[1] / "docs" / "operations.md").read_text()
    shown = " ".join(guide.split("resetchannels ~* -@all", 1)[1].split("```", 1)[0].split())
    assert "resetchannels ~* -@all " + shown == SERVICE_ACL_RULE


def test_every_command_the_records_code_names_is_the_records_users() -> None:
    named = set()
    for module in (STORE.parent / "records").glob("*.py"):
        # The names a module exports are in capitals too.
        text = re.sub(r"__all__ = \[.*?\]", "", module.read_text(), flags=re.S)
        for word in re.findall(r"[\"']([A-Z]{3,})[\"']", text):
            named.add(word.lower())
    # Options, reply prefixes and engine words, not commands.
    not_commands = {"group", "count", "streams", "create", "mkstream", "minid", "busygroup",
                    "groups", "stream", "setid", "limit", "utc"}  # fmt: skip
    allowed = {c.split("|")[0] for c in RECORDS_COMMANDS}
    missing = named - not_commands - allowed
    assert not missing, f"add to RECORDS_COMMANDS or explain: {sorted(missing)}"


def test_the_records_rule_reaches_only_the_streams_and_its_own_keys() -> None:
    assert RECORDS_ACL_RULE.startswith("resetchannels ~ce:scan:* ~ce:chg:* ~ce:rec:* -@all +")
    assert "+@" not in RECORDS_ACL_RULE
    assert not {"xadd", "eval", "evalsha", "keys", "scan"} & set(RECORDS_COMMANDS)


def test_the_operations_guide_shows_the_records_rule() -> None:
    guide = (STORE.parents[1] / "docs" / "operations.md").read_text()
    start = f"resetchannels {RECORDS_KEYS} -@all"
    shown = " ".join(guide.split(start, 1)[1].split("```", 1)[0].split())
    assert f"{start} {shown}" == RECORDS_ACL_RULE
