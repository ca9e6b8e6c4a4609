"""Triage on the bad-case store: queue filters, claims with expiry, assignments, bulk decisions, undo."""

import hashlib

import pytest

from flywheel.badcases import BadCase, BadCaseError, BadCaseStore
from flywheel.badcases.triage import ClaimedError, QueueFilter, Triage


def _store(tmp_path, n: int = 6) -> BadCaseStore:
    store = BadCaseStore(tmp_path / "bc")
    cases = [
        BadCase(
            content_key=hashlib.sha256(f"case {i}".encode()).hexdigest(),
            kind="bad",
            source="evaluation" if i % 2 == 0 else "feedback",
            prompt="a red cube" if i < 3 else f"prompt {i}",
            origin=f"test:{i}",
            failure_tags=["low_quality"] if i % 3 == 0 else ["object_missing"],
            checkpoint="ck-a" if i < 4 else "ck-b",
        )
        for i in range(n)
    ]
    store.ingest(cases)
    return store


def test_queue_filters_combine(tmp_path):
    triage = Triage(_store(tmp_path))
    assert triage.queue(QueueFilter())[1] == 6
    assert triage.queue(QueueFilter(source="feedback"))[1] == 3
    rows, total = triage.queue(QueueFilter(tag="low_quality", checkpoint="ck-a"))
    assert total == 2 and all("low_quality" in r["failure_tags"] for r in rows)
    first = rows[0]["case_id"]
    triage.decide(first, "rl", "ann")
    assert triage.queue(QueueFilter(undecided=True))[1] == 5
    triage.assign([first], "bob", "admin")
    assert [r["case_id"] for r in triage.queue(QueueFilter(assigned_to="bob"))[0]] == [first]
    with pytest.raises(BadCaseError):
        QueueFilter(source="nowhere").sql()


def test_claims_exclude_other_annotators_and_expire(tmp_path):
    store = _store(tmp_path)
    triage = Triage(store)
    cid = triage.queue(QueueFilter())[0][0]["case_id"]
    triage.claim(cid, "ann")
    triage.claim(cid, "ann")  # renewing one's own claim is fine
    with pytest.raises(ClaimedError):
        triage.claim(cid, "bob")
    with pytest.raises(ClaimedError):
        triage.decide(cid, "rl", "bob")
    expired = Triage(store, claim_minutes=-1.0)
    expired.claim(cid, "ann")  # an already-expired claim
    assert triage.holder(cid) is None
    triage.decide(cid, "pretrain", "bob")
    assert store.get(cid)["track"] == "pretrain"


def test_bulk_decision_touches_same_prompt_undecided_only(tmp_path):
    store = _store(tmp_path)
    triage = Triage(store)
    same = [r["case_id"] for r in store.list() if r["prompt"] == "a red cube"]
    triage.decide(same[2], "dismiss", "carol")
    assert triage.same_prompt_undecided(same[0]) == 1
    ids = triage.decide(same[0], "prompt", "ann", bulk=True)
    assert len(ids) == 2
    assert [store.get(c)["track"] for c in same] == ["prompt", "prompt", "dismiss"]


def test_undo_restores_routing_and_hides_decision_from_router(tmp_path):
    store = _store(tmp_path)
    triage = Triage(store)
    cid = store.list()[0]["case_id"]
    triage.decide(cid, "rl", "ann", note="blurry")
    undone = triage.undo("ann")
    assert undone is not None and undone["case_id"] == cid
    case = store.get(cid)
    assert case["track"] is None and case["track_by"] is None
    assert case["decisions"][0]["undone_by"] == "ann"
    assert store.latest_decisions() == {}
    assert triage.undo("ann") is None
    triage.decide(cid, "rl", "ann")
    triage.decide(cid, "pretrain", "bob")
    with pytest.raises(BadCaseError):
        triage.undo("ann")  # bob decided the case since


def test_neighbours_follow_queue_order(tmp_path):
    triage = Triage(_store(tmp_path))
    ids = [r["case_id"] for r in triage.queue(QueueFilter())[0]]
    assert triage.neighbour(ids[0], QueueFilter(), step=1) == ids[1]
    assert triage.neighbour(ids[1], QueueFilter(), step=-1) == ids[0]
    assert triage.neighbour(ids[-1], QueueFilter(), step=1) is None
