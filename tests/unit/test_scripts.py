"""The Lua scripts' files against their Python declaration: argument names and result codes."""

from __future__ import annotations

import re
from enum import IntEnum
from importlib import resources

import pytest

from codeengine.store import scripts
from codeengine.store.scripts import SIGNATURES, compose, source

_DECLARED = re.compile(r"^local (\w+) = (?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?", re.MULTILINE)
_POSITIONAL = re.compile(r"(KEYS|ARGV)\[\d+\]")
_INCLUDED = re.compile(r"^-- #include (\w+\.lua)$", re.MULTILINE)
_REPLY = re.compile(r"\breturn\b\s*(.*)|codes\[#codes \+ 1\] = (\S+)")
_CODE = re.compile(r"^\{?(-?\d+)\b")


def _file(name: str) -> str:
    return f"{name.lower()}.lua"


def _own(name: str) -> str:
    """The script's file without the files it includes."""
    return source(_file(name))


def _codes(name: str) -> list[int]:
    """The code of every reply site of the script's own text (``return``, a per-row code)."""
    found = []
    for returned, appended in _REPLY.findall(_own(name)):
        site = (returned or appended).strip()
        if site == "codes":  # the per-row codes, collected at their own sites
            continue
        code = _CODE.match(site)
        assert code, f"{name}: a reply whose code is not a number: {site!r}"
        found.append(int(code[1]))
    return found


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_the_file_names_its_arguments_as_python_declares_them(name: str) -> None:
    signature = SIGNATURES[name]
    text = compose(_file(name))
    assert text == getattr(scripts, name)
    declared: dict[str, list[tuple[str, int]]] = {"KEYS": [], "ARGV": []}
    for local, table, index in _DECLARED.findall(text):
        declared[table].append((local, int(index)))
    for table, names in (("KEYS", signature.keys), ("ARGV", signature.args)):
        assert [local for local, _ in declared[table]] == list(names), table
        assert [index for _, index in declared[table]] == list(range(1, len(names) + 1)), table
    # Past the names, the body never picks an argument by its position.
    body = _DECLARED.sub("", text)
    assert not _POSITIONAL.search(body), _POSITIONAL.findall(body)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_repeated_fields_are_read_where_the_named_arguments_end(name: str) -> None:
    signature = SIGNATURES[name]
    text = compose(_file(name))
    if not signature.row:
        assert "#ARGV" not in text
        return
    first, width = len(signature.args) + 1, len(signature.row)
    step = f", {width}" if width > 1 else ""
    loop = re.search(rf"^for i = (\d+), #ARGV{step} do\n(?:\s*--.*\n)*\s*local (.*)$", text, re.M)
    assert loop, "no loop over the rows"
    assert int(loop[1]) == first
    names, _, read = loop[2].partition(" = ")
    assert names.split(", ") == list(signature.row)
    assert read == (f"unpack(ARGV, i, i + {width - 1})" if width > 1 else "ARGV[i]")


@pytest.mark.parametrize("name", sorted(n for n, s in SIGNATURES.items() if s.codes))
def test_every_code_a_script_returns_is_a_member_of_its_enum(name: str) -> None:
    codes = SIGNATURES[name].codes
    assert codes is not None
    found = _codes(name)
    assert found
    assert set(found) <= {int(member) for member in codes}


def test_every_member_of_an_enum_is_returned_by_a_script() -> None:
    """A member no script returns would be a branch the adapter waits for in vain."""
    returned: dict[type[IntEnum], set[int]] = {}
    for name, signature in SIGNATURES.items():
        if signature.codes:
            returned.setdefault(signature.codes, set()).update(_codes(name))
    for enum, found in returned.items():
        assert {int(member) for member in enum} == found, enum.__name__


def test_every_file_is_a_script_or_included_by_one() -> None:
    files = {
        entry.name
        for entry in (resources.files("codeengine.store") / "lua").iterdir()
        if entry.name.endswith(".lua")
    }
    scripts_ = {_file(name) for name in SIGNATURES}
    included = {inc for name in SIGNATURES for inc in _INCLUDED.findall(_own(name))}
    assert files == scripts_ | included
    assert not scripts_ & included
    assert all(not _INCLUDED.search(source(inc)) for inc in included)


def test_the_cross_slot_scripts_keep_their_flags_line() -> None:
    assert scripts.PUT_RECORDS.startswith("#!lua flags=allow-cross-slot-keys\n")
    assert scripts.READ_RECORDS.startswith("#!lua flags=no-writes,allow-cross-slot-keys\n")


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_no_script_builds_a_record(name: str) -> None:
    # Records are sealed by the services with a key Redis never sees: a script that packs a
    # value would write bytes no seal covers (codeengine.code.seal).
    assert "cmsgpack.pack" not in compose(_file(name))
