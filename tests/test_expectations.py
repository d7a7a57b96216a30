"""Expectations in the style of Delta Live Tables: warn, drop and fail."""

from __future__ import annotations

import pytest

from spark_jobs.common.expectations import (
    Expectation,
    Outcome,
    apply_expectations,
    checked_rows,
    failures,
    kept_rows,
)

ROWS = [
    # id, show_id, title, minutes
    (1, "s1", "A", 90),
    (2, None, "B", 100),  # show_id missing
    (3, "s3", None, 80),  # title missing
    (4, None, None, 70),  # both missing
    (5, "s5", "E", -5),  # negative duration
    (6, "s6", "F", None),  # duration unknown: the rule's result is NULL
]


@pytest.fixture
def titles(spark):
    return spark.createDataFrame(ROWS, "id int, show_id string, title string, minutes int")


def ids(df) -> list[int]:
    return sorted(r["id"] for r in df.collect())


def by_name(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o.name: o for o in outcomes}


def test_no_expectations_returns_the_frame_untouched(titles):
    kept, outcomes, dropped = apply_expectations(titles, "titles", [])
    assert kept is titles
    assert (outcomes, dropped) == ([], 0)


def test_warn_keeps_rows_and_counts_failures(titles):
    rule = Expectation("show_id_not_null", "show_id IS NOT NULL", "warn")
    kept, outcomes, dropped = apply_expectations(titles, "titles", [rule])
    assert ids(kept) == [1, 2, 3, 4, 5, 6]
    assert dropped == 0
    (outcome,) = outcomes
    assert (outcome.table, outcome.name, outcome.rule, outcome.action) == (
        "titles",
        "show_id_not_null",
        "show_id IS NOT NULL",
        "warn",
    )
    assert (outcome.rows_total, outcome.rows_failing, outcome.rows_dropped) == (6, 2, 0)
    assert outcome.rows_passed == 4
    assert outcome.status == "warned"


def test_drop_removes_failing_rows(titles):
    rule = Expectation("show_id_not_null", "show_id IS NOT NULL", "drop")
    kept, outcomes, dropped = apply_expectations(titles, "titles", [rule])
    assert ids(kept) == [1, 3, 5, 6]
    assert dropped == 2
    (outcome,) = outcomes
    assert (outcome.rows_total, outcome.rows_failing, outcome.rows_dropped) == (6, 2, 2)
    assert outcome.status == "dropped"


def test_null_rule_result_counts_as_failing(titles):
    # minutes >= 0 is NULL for row 6: it fails, as it would in Delta Live Tables.
    warn = Expectation("minutes_ok", "minutes >= 0", "warn")
    _, (outcome,), _ = apply_expectations(titles, "titles", [warn])
    assert outcome.rows_failing == 2  # row 5 (false) and row 6 (NULL)

    drop = Expectation("minutes_ok", "minutes >= 0", "drop")
    kept, _, dropped = apply_expectations(titles, "titles", [drop])
    assert ids(kept) == [1, 2, 3, 4]
    assert dropped == 2


def test_row_failing_two_drop_rules_is_dropped_once(titles):
    rules = [
        Expectation("show_id_not_null", "show_id IS NOT NULL", "drop"),
        Expectation("title_not_null", "title IS NOT NULL", "drop"),
    ]
    kept, outcomes, dropped = apply_expectations(titles, "titles", rules)
    assert ids(kept) == [1, 5, 6]
    # Rows 2, 3 and 4 go; row 4 fails both rules but is one dropped row.
    assert dropped == 3
    got = {name: (o.rows_failing, o.rows_dropped) for name, o in by_name(outcomes).items()}
    assert got == {"show_id_not_null": (2, 2), "title_not_null": (2, 2)}


def test_mixed_actions_only_drop_rules_filter(titles):
    rules = [
        Expectation("show_id_not_null", "show_id IS NOT NULL", "drop"),
        Expectation("title_not_null", "title IS NOT NULL", "warn"),
        Expectation("minutes_ok", "minutes >= 0", "fail"),
        Expectation("id_positive", "id > 0", "fail"),
    ]
    kept, outcomes, dropped = apply_expectations(titles, "titles", rules)
    assert ids(kept) == [1, 3, 5, 6]
    assert dropped == 2
    outcome = by_name(outcomes)
    assert [o.name for o in outcomes] == [r.name for r in rules]
    assert all(o.rows_total == 6 for o in outcomes)
    # Every rule is evaluated on all input rows, before anything is dropped.
    assert outcome["title_not_null"].rows_failing == 2
    assert outcome["title_not_null"].rows_dropped == 0
    assert outcome["minutes_ok"].rows_failing == 2
    assert outcome["minutes_ok"].status == "failed"
    assert outcome["id_positive"].rows_failing == 0
    assert outcome["id_positive"].status == "passed"


def test_kept_rows_keeps_what_apply_expectations_keeps(titles):
    """The uncounted filter (gold's earlier dimensions) drops the same rows, NULL results too."""
    rules = [
        Expectation("minutes_ok", "minutes >= 0", "drop"),
        Expectation("title_not_null", "title IS NOT NULL", "warn"),
        Expectation("show_id_not_null", "show_id IS NOT NULL", "fail"),
    ]
    assert ids(kept_rows(titles, rules)) == [1, 2, 3, 4]
    assert ids(kept_rows(titles, rules)) == ids(apply_expectations(titles, "titles", rules)[0])
    assert ids(kept_rows(titles, rules[1:])) == [1, 2, 3, 4, 5, 6]


def test_checked_rows_keeps_the_computed_rows_and_computes_again_only_after_a_drop(titles):
    warn = [Expectation("title_not_null", "title IS NOT NULL", "warn")]
    kept, outcomes, dropped = checked_rows(titles, "titles", warn, materialized=True)
    assert kept is titles  # nothing dropped: the caller's computed rows are the table
    assert (dropped, outcomes[0].rows_failing) == (0, 2)
    drop = [Expectation("minutes_ok", "minutes >= 0", "drop")]
    kept, outcomes, dropped = checked_rows(titles, "titles", drop)
    assert (ids(kept), dropped, outcomes[0].rows_dropped) == ([1, 2, 3, 4], 2, 2)


def test_rules_sharing_a_name_are_each_enforced(titles):
    # Two rules with one name (a copy-paste in the pipeline metadata): both must apply.
    rules = [
        Expectation("not_null", "show_id IS NOT NULL", "drop"),
        Expectation("not_null", "title IS NOT NULL", "drop"),
    ]
    kept, outcomes, dropped = apply_expectations(titles, "titles", rules)
    assert ids(kept) == [1, 5, 6]
    assert dropped == 3
    assert [(o.rule, o.rows_failing) for o in outcomes] == [
        ("show_id IS NOT NULL", 2),
        ("title IS NOT NULL", 2),
    ]


@pytest.mark.parametrize("name", ["_total", "_dropped"])
def test_rule_names_do_not_clash_with_the_totals(titles, name):
    kept, (outcome,), dropped = apply_expectations(titles, "titles", [Expectation(name, "id > 1", "drop")])
    assert ids(kept) == [2, 3, 4, 5, 6]
    assert (outcome.rows_total, outcome.rows_failing, outcome.rows_dropped) == (6, 1, 1)
    assert dropped == 1


def test_failures_lists_only_failing_fail_rules(titles):
    rules = [
        Expectation("show_id_not_null", "show_id IS NOT NULL", "drop"),
        Expectation("title_not_null", "title IS NOT NULL", "warn"),
        Expectation("minutes_ok", "minutes >= 0", "fail"),
        Expectation("id_positive", "id > 0", "fail"),
    ]
    _, outcomes, _ = apply_expectations(titles, "titles", rules)
    assert failures(outcomes) == ["titles: expectation 'minutes_ok' (minutes >= 0) failed for 2 of 6 rows"]


def test_failures_empty_when_fail_rules_pass(titles):
    rules = [
        Expectation("id_positive", "id > 0", "fail"),
        Expectation("show_id_not_null", "show_id IS NOT NULL", "warn"),
    ]
    _, outcomes, _ = apply_expectations(titles, "titles", rules)
    assert failures(outcomes) == []


def test_empty_frame_passes_everything(spark):
    empty = spark.createDataFrame([], "id int, show_id string")
    rules = [
        Expectation("show_id_not_null", "show_id IS NOT NULL", "drop"),
        Expectation("id_positive", "id > 0", "fail"),
    ]
    kept, outcomes, dropped = apply_expectations(empty, "titles", rules)
    assert kept.count() == 0
    assert dropped == 0
    assert [(o.rows_total, o.rows_failing, o.status) for o in outcomes] == [
        (0, 0, "passed"),
        (0, 0, "passed"),
    ]
    assert failures(outcomes) == []


# -- from_config -----------------------------------------------------------------------------------


def test_from_config_reads_an_item_and_defaults_to_warn():
    item = {"name": "show_id_not_null", "rule": "show_id IS NOT NULL", "action": "drop"}
    assert Expectation.from_config("titles", item) == Expectation(
        "show_id_not_null", "show_id IS NOT NULL", "drop"
    )
    assert Expectation.from_config("titles", {"name": "n", "rule": "id > 0"}).action == "warn"


def test_from_config_rejects_an_unknown_action():
    item = {"name": "show_id_not_null", "rule": "show_id IS NOT NULL", "action": "quarantine"}
    with pytest.raises(ValueError, match=r"^titles: expectation 'show_id_not_null' has action 'quarantine'"):
        Expectation.from_config("titles", item)


@pytest.mark.parametrize(
    "item",
    [
        {"name": "no_rule", "action": "drop"},
        {"name": "blank_rule", "rule": "", "action": "warn"},
        {"rule": "id > 0", "action": "fail"},
    ],
    ids=["missing-rule", "blank-rule", "missing-name"],
)
def test_from_config_rejects_a_missing_name_or_rule(item):
    with pytest.raises(ValueError, match=r"^cast: every expectation needs a name and a rule"):
        Expectation.from_config("cast", item)
