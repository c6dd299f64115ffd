"""The dominance and p% rules, against hand-worked totals (Hundepool et al. 2012, §4.2.2)."""

import numpy as np
import pandas as pd

from fednb.domain.release.magnitude import dominated, p_percent, sensitive, sensitive_groups


def test_one_pond_that_makes_most_of_the_output_dominates_the_total():
    output = np.array([1000.0] + [10.0] * 20)  # 1000 of 1200: the two largest hold 84.2 %
    assert not dominated(output)                # under k = 90 %
    assert dominated(output, n=1, k=0.8)        # but one pond alone holds 83 % > 80 %
    assert not p_percent(output)                # the rest, 190, is not under 10 % of 1000 (100)


def test_the_p_percent_rule_on_a_total_the_second_largest_can_estimate():
    assert p_percent(np.array([500.0, 40.0, 5.0, 4.0]))      # rest 9 < 50
    assert not p_percent(np.array([500.0, 40.0, 30.0, 30.0]))  # rest 60 >= 50


def test_even_contributions_pass_both_rules_and_a_dominated_total_says_why():
    assert sensitive(np.arange(1.0, 30.0)) is None
    reason = sensitive(np.array([5000.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]))
    assert reason is not None and "dominance" in reason


def test_negative_contributions_count_by_size():
    assert dominated(np.array([-9000.0, 10.0, 10.0, 10.0, 10.0]))


def test_cells_of_a_table_are_judged_one_by_one():
    frame = pd.DataFrame({"site": ["a"] * 12 + ["b"] * 12,
                          "cost": [1.0] * 11 + [5000.0] + list(np.arange(1.0, 13.0))})
    flags = sensitive_groups(frame, "cost", ["site"])
    assert bool(flags["a"]) and not bool(flags["b"])
    assert bool(flags["a"]) == (sensitive(frame.cost[frame.site == "a"].to_numpy()) is not None)
