"""The rotation drill's reading of a terminal's lists, its goals and its command line."""

from __future__ import annotations

from typing import Any

import pytest

from codeengine.ops.cli import _parser
from codeengine.ops.rotationdrill import RotationDrillOptions, _Terminal, run_rotation_drill
from codeengine.ops.rotationreport import rotation_goals

OLD, NEW = frozenset({"old"}), frozenset({"old", "new"})


def terminal() -> _Terminal:
    held = _Terminal("t", 100.0)
    held.held = [(100.0, 100.2, OLD), (110.0, 110.3, NEW)]
    return held


def test_a_terminal_holds_the_list_it_took_until_the_next_one_is_taken() -> None:
    t = terminal()
    assert t.kids_at(99.0, 10) is None, "no list yet"
    assert t.kids_at(100.2, 10) == OLD
    assert t.kids_at(110.2, 10) == OLD, "the fetch was sent but its list not taken yet"
    assert t.kids_at(110.3, 10) == NEW
    assert not t.taken_since(110.5) and t.taken_since(110.0)


def test_a_terminal_past_its_period_counts_as_off_schedule_not_as_lacking_the_key() -> None:
    t = terminal()
    assert t.kids_at(120.0, 10) == NEW, "exactly a period after the fetch was sent"
    assert t.kids_at(120.5, 10) is None
    assert t.kids_at(115.0, 4) is None
    # Its next fetch went out on time and is under way: it is on schedule, with the list before.
    assert t.kids_at(110.2, 9) == OLD
    assert t.kids_at(109.5, 9) is None, "9.5 s since its last fetch was sent"


def summary(**changes: Any) -> dict[str, Any]:
    rotation = {"to": "SM2SM3", "terminals_without_key_at_switch": 0}
    base: dict[str, Any] = {
        "refused_valid_offline": 0,
        "refused_valid_online": 0,
        "rotations": [rotation, {**rotation, "to": "EdDSA"}],
        "online_by_suite_and_reason": {"EdDSA VALID": 5, "SM2SM3 VALID": 3},
        "offline_by_suite_and_reason": {"EdDSA VALID": 4, "SM2SM3 UNKNOWN_KID": 1},
        "old_codes_valid_after_switch": {"online": 2},
        "list_fetch_failures": {},
    }
    return base | changes


def failed(s: dict[str, Any], back: bool = True) -> list[str]:
    return [g["goal"] for g in rotation_goals(s, "SM2SM3", back) if not g["passed"]]


def test_the_goals_pass_on_a_clean_rotation_there_and_back() -> None:
    assert failed(summary()) == []


@pytest.mark.parametrize(
    ("changes", "goal"),
    [
        ({"refused_valid_offline": 1}, "valid codes refused offline"),
        ({"refused_valid_online": 2}, "valid codes refused online"),
        ({"old_codes_valid_after_switch": {}}, "replaced keys' codes verified after the switch"),
        ({"list_fetch_failures": {"no list (503)": 1}}, "terminal list fetches failed or refused"),
        (
            {"online_by_suite_and_reason": {"EdDSA VALID": 1}, "offline_by_suite_and_reason": {}},
            "suites verified valid, online and offline",
        ),
        (
            {"rotations": [{"to": "SM2SM3", "terminals_without_key_at_switch": 1}]},
            "terminals without the new key when it started signing",
        ),
    ],
)
def test_each_goal_fails_on_what_it_counts(changes: dict[str, Any], goal: str) -> None:
    assert goal in failed(summary(**changes))


def test_a_rotation_that_did_not_come_back_fails_when_back_was_asked() -> None:
    one_way = summary(rotations=[{"to": "SM2SM3", "terminals_without_key_at_switch": 0}])
    assert failed(one_way, back=True) == ["rotations that took effect"]
    assert failed(one_way, back=False) == []


def test_the_drill_refuses_a_suite_it_cannot_rotate_to() -> None:
    with pytest.raises(ValueError, match="unknown suite"):
        run_rotation_drill(RotationDrillOptions(to="RS256"))
    with pytest.raises(ValueError, match="starts on EdDSA"):
        run_rotation_drill(RotationDrillOptions(to="EdDSA"))


def test_the_drill_command_takes_rotate_suite_with_its_schedule() -> None:
    args = _parser().parse_args(
        ["drill", "rotate-suite", "--to", "SM2SM3", "--back", "--list-max-age", "30",
         "--display-ttl", "60", "--terminals", "8", "--activate-in", "0"]
    )  # fmt: skip
    assert (args.name, args.to, args.back, args.list_max_age) == (
        "rotate-suite",
        "SM2SM3",
        True,
        30,
    )
    assert (args.display_ttl, args.terminals, args.activate_in) == (60, 8, 0)
    default = _parser().parse_args(["drill", "rotate-suite"])
    assert (default.to, default.back, default.activate_in) == ("SM2SM3", False, None)
