"""The failover router's choice of endpoint, driven by outcomes and instants."""

from __future__ import annotations

from codeengine.code.breaker import Breaker
from codeengine.code.fencing import Role
from failover.router import Outcome, Router

FAILED, OK = Outcome.FAILED, Outcome.OK


def router() -> Router:
    def breaker() -> Breaker:
        return Breaker(failures_to_open=3, open_for_s=1.0, successes_to_close=3)

    return Router(breaker(), breaker())


def test_it_leaves_a_failing_primary_for_a_healthy_backup_and_says_so() -> None:
    r = router()
    assert r.order(0.0) == (Role.PRIMARY, Role.BACKUP)
    assert r.report(Role.PRIMARY, FAILED, 0.1) is None
    assert r.report(Role.PRIMARY, FAILED, 0.2) is None
    event = r.report(Role.PRIMARY, FAILED, 0.3)
    assert event is not None and (event.source, event.to, event.at) == (
        Role.PRIMARY,
        Role.BACKUP,
        0.3,
    )
    assert r.order(0.4) == (Role.BACKUP, Role.PRIMARY)


def test_it_returns_only_after_the_primary_answers_well_several_times() -> None:
    r = router()
    for at in (0.0, 0.1, 0.2):
        r.report(Role.PRIMARY, FAILED, at)
    assert r.active is Role.BACKUP
    assert not r.probe_due(Role.PRIMARY, 0.9), "an open breaker waits for its period"
    assert r.probe_due(Role.PRIMARY, 1.2)
    assert r.report(Role.PRIMARY, OK, 1.2) is None
    assert r.probe_due(Role.PRIMARY, 1.7)
    assert r.report(Role.PRIMARY, OK, 1.7) is None
    assert r.active is Role.BACKUP, "two good answers are not enough"
    assert r.probe_due(Role.PRIMARY, 2.2)
    back = r.report(Role.PRIMARY, OK, 2.2)
    assert back is not None and back.to is Role.PRIMARY
    assert [e.to for e in r.switches] == [Role.BACKUP, Role.PRIMARY]


def test_a_fault_shared_by_both_endpoints_does_not_make_it_flap() -> None:
    r = router()
    for at in (0.0, 0.1, 0.2):
        r.report(Role.BACKUP, FAILED, at)
    for at in (0.3, 0.4, 0.5):
        assert r.report(Role.PRIMARY, FAILED, at) is None
    assert r.active is Role.PRIMARY
    assert r.order(0.6) == (Role.PRIMARY, Role.BACKUP), "still tries, primary first"
    assert r.switches == []


def test_a_primary_that_fails_again_while_half_open_stays_out() -> None:
    r = router()
    for at in (0.0, 0.1, 0.2):
        r.report(Role.PRIMARY, FAILED, at)
    r.report(Role.PRIMARY, OK, 1.3)
    r.report(Role.PRIMARY, FAILED, 1.4)
    for at in (1.5, 1.6, 1.7):
        r.report(Role.PRIMARY, OK, at)
    assert r.active is Role.BACKUP, "a failure in half-open restarts the open period"
    for at in (2.5, 2.6, 2.7):
        r.report(Role.PRIMARY, OK, at)
    assert r.order(2.8) == (Role.PRIMARY, Role.BACKUP)


def test_an_endpoint_held_off_is_left_out_until_its_time_without_a_switch() -> None:
    r = router()
    r.hold_off(Role.PRIMARY, 2.0)
    assert r.order(1.0) == (Role.BACKUP,)
    assert r.free_at(1.0) == 1.0, "the backup may be tried now"
    r.hold_off(Role.BACKUP, 1.5)
    assert r.order(1.0) == ()
    assert r.free_at(1.0) == 1.5
    r.hold_off(Role.PRIMARY, 1.8)  # an earlier Retry-After does not shorten a later one
    assert r.order(1.6) == (Role.BACKUP,)
    assert r.order(2.0) == (Role.PRIMARY, Role.BACKUP)
    assert r.free_at(2.0) == 2.0 and r.not_before == {}
    assert r.active is Role.PRIMARY and r.switches == []
