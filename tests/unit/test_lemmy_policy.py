"""The Lemmy follow-up's policy: which evidence a hit carries, which steps that allows
(a classifier verdict alone only ever reports unless opted in), the calls they mean, and
what Lemmy's answers mean for a step."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestd.config import load_config
from attestd.errors import ConfigError
from attestd.lemmy import policy
from attestd.lemmy.policy import Content, Found, Person, evidence_kind, plan, steps_for

UPLOADER = Person(7, "uploader")
OTHER = Person(8, "other", "https://elsewhere.test/u/other", local=False)
POST = Content("post", 12, UPLOADER)
COMMENT = Content("comment", 30, OTHER)
AUTOMATIC = {"hash_list": ("purge", "ban_remove_data"), "classifier": ("purge", "ban")}


@pytest.mark.parametrize(("source", "method", "kind"), [
    ("override:3", None, "override"),
    ("list:ncmec", None, "hash_list"),
    ("verdict:12", "human_review", "human_review"),
    ("verdict:12", "classifier", "classifier"),
    ("attestation-row:7", None, "peer"),
    ("verdict:12", None, None),  # a verdict whose method is unknown is never guessed
    ("something:1", None, None),
])
def test_evidence_kind_of_a_hit(source: str, method: str | None, kind: str | None) -> None:
    assert evidence_kind(source, method) == kind


def test_the_classifier_alone_reports_only_unless_the_admin_opted_in() -> None:
    assert steps_for("classifier", AUTOMATIC, classifier_alone_may_act=False) == ()
    assert steps_for("classifier", {"classifier": ("report", "purge")},
                     classifier_alone_may_act=False) == ("report",)
    assert steps_for("classifier", AUTOMATIC, classifier_alone_may_act=True) == ("purge", "ban")
    assert steps_for("hash_list", AUTOMATIC, classifier_alone_may_act=False) == (
        "purge", "ban_remove_data")


def test_steps_run_content_first_people_last_whatever_the_order_listed() -> None:
    got = steps_for("override", {"override": ("purge_person", "report", "ban", "remove")},
                    classifier_alone_may_act=False)
    assert got == ("report", "remove", "ban", "purge_person")


def test_default_is_report_for_a_kind_the_policy_does_not_name() -> None:
    assert steps_for("peer", {}, classifier_alone_may_act=False) == ("report",)


def test_plan_acts_on_content_and_the_uploader() -> None:
    found = Found(UPLOADER, (POST, COMMENT))
    got = plan(("purge", "ban_remove_data"), found, "why")
    assert [(p.step, p.target) for p in got] == [
        ("purge", "post:12"), ("purge", "comment:30"), ("ban_remove_data", "person:7")]
    assert got[0].body == {"post_id": 12, "reason": "why"}
    assert got[2].body == {"person_id": 7, "ban": True, "remove_data": True, "reason": "why"}
    removed = plan(("remove", "ban"), found, "why")
    assert removed[0].body == {"post_id": 12, "reason": "why", "removed": True}
    assert removed[2].body["remove_data"] is False


def test_without_an_upload_record_the_authors_are_acted_on_once_each() -> None:
    found = Found(None, (POST, COMMENT, Content("post", 13, OTHER)))
    got = plan(("ban",), found, "why")
    assert [p.target for p in got] == ["person:7", "person:8"]


def test_nothing_found_plans_nothing() -> None:
    assert plan(("report", "purge", "ban"), Found(), "why") == []


@pytest.mark.parametrize(("status", "error", "meaning"), [
    (200, None, "done"),
    (400, "couldnt_find_post", "done"),  # already purged
    (400, "couldnt_find_person", "done"),
    (404, "couldnt_update_user", "done"),  # a ban of a person who is gone
    (503, None, "retry"),
    (502, None, "retry"),
    (400, "rate_limit_error", "retry"),  # Lemmy 0.19's rate limit is a 400
    (400, "not_an_admin", "failed"),
    (400, "not_higher_admin", "failed"),
])
def test_what_lemmys_answers_mean(status: int, error: str | None, meaning: str) -> None:
    assert policy.outcome(status, error) == meaning


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [policy.backoff_s(n, 30) for n in (1, 2, 3)] == [30, 60, 120]
    assert policy.backoff_s(40, 30) == 6 * 3600


def test_config_refuses_classifier_actions_without_the_loud_opt_in(tmp_path: Path) -> None:
    env = {"ATTESTD_LEMMY__URL": "http://lemmy:8536", "ATTESTD_LEMMY__USERNAME": "bot",
           "ATTESTD_LEMMY__PASSWORD": "s3cret-pass", "ATTESTD_LEMMY__POLICY__CLASSIFIER":
           '["report", "purge"]'}
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "none.toml", env)
    assert "act_on_classifier_alone" in str(exc.value)
    assert "s3cret-pass" not in str(exc.value)  # the table's error quotes none of its keys
    cfg = load_config(tmp_path / "none.toml", {**env, "ATTESTD_LEMMY__ACT_ON_CLASSIFIER_ALONE":
                                               "true"})
    assert cfg.lemmy.policy.classifier == ("report", "purge")
    assert load_config(tmp_path / "none.toml", {}).lemmy.policy.hash_list == ("report",)


def test_config_needs_the_bots_account_and_reads_the_password_from_a_file(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lemmy.username"):
        load_config(tmp_path / "none.toml", {"ATTESTD_LEMMY__URL": "http://lemmy:8536"})
    (tmp_path / "pw").write_text("from-a-file\n")
    cfg = load_config(tmp_path / "none.toml", {
        "ATTESTD_LEMMY__URL": "http://lemmy:8536/", "ATTESTD_LEMMY__USERNAME": "bot",
        "ATTESTD_LEMMY__PASSWORD_FILE": str(tmp_path / "pw")})
    assert cfg.lemmy.password.get_secret_value() == "from-a-file"
    assert cfg.lemmy.url == "http://lemmy:8536"
    assert "from-a-file" not in repr(cfg)
