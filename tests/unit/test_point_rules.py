"""monitor.engine.windows.PointRules: lateness, duplicates and gaps, each handled by rule and counted."""

from __future__ import annotations

import numpy as np

from monitor.engine.windows import PointRules, WindowStore

from .test_windows import T0, pt


def store(window: int = 4, stride: int = 1, **rules) -> WindowStore:
    return WindowStore(window, stride, ("value",), 100, None, PointRules(**rules))


def pushed(s: WindowStore, stamps: list[float]) -> list:
    return [w for t in stamps for w in s.push(pt(t, t))]


def test_points_within_the_allowed_lateness_are_put_in_time_order():
    s = store(window=3, allowed_lateness=2.0)
    windows = pushed(s, [0, 1, 3, 2, 4, 5, 6, 7])
    assert s.adjusted == {"reordered": 1}
    assert s.dropped == {}
    ends = [w.end_ts for w in windows]
    assert ends == sorted(ends)
    np.testing.assert_array_equal(windows[0].data[:, 0], [0.0, 1.0, 2.0])  # 2 arrived after 3, used before it


def test_points_later_than_the_allowed_lateness_are_dropped():
    s = store(window=3, allowed_lateness=2.0)
    pushed(s, [10, 11, 12, 13, 14, 11.5, 8])
    assert s.dropped == {"late": 2}
    assert s.accepted == 5


def test_held_points_wait_for_the_lateness_then_come_out_together():
    s = store(window=2, stride=1, allowed_lateness=5.0)
    assert pushed(s, [0, 1, 2]) == []  # all held: nothing is older than the newest by 5 s yet
    windows = pushed(s, [10])  # releases 0, 1, 2 (and 10 stays held)
    assert [(w.start_ts - T0, w.end_ts - T0) for w in windows] == [(0, 1), (1, 2)]


def test_duplicates_keep_the_first_by_default():
    s = store(window=2)
    windows = pushed(s, [0, 1]) + [w for w in s.push(pt(1, 99.0))] + pushed(s, [2])
    assert s.dropped == {"duplicate": 1}
    np.testing.assert_array_equal(windows[-1].data[:, 0], [1.0, 2.0])


def test_duplicates_can_keep_the_last():
    s = store(window=2, duplicates="last")
    pushed(s, [0, 1])
    assert s.push(pt(1, 99.0)) == []
    windows = pushed(s, [2])
    assert s.adjusted == {"duplicate_replaced": 1}
    np.testing.assert_array_equal(windows[-1].data[:, 0], [99.0, 2.0])


def test_duplicates_of_held_points_follow_the_same_rule():
    s = store(window=2, duplicates="last", allowed_lateness=10.0)
    s.push(pt(0, 1.0))
    s.push(pt(0, 2.0))
    windows = pushed(s, [1, 30])
    np.testing.assert_array_equal(windows[0].data[:, 0], [2.0, 1.0])
    assert s.adjusted == {"duplicate_replaced": 1}


def test_short_gaps_are_filled_by_linear_interpolation():
    s = store(window=4, step=60.0, fill_gaps=2)
    windows = [w for t, v in [(0, 0.0), (60, 1.0), (240, 4.0)] for w in s.push(pt(t, v))]
    assert s.adjusted == {"gap_filled": 2}
    assert len(windows) == 1  # windows end on real points only
    np.testing.assert_array_equal(windows[0].data[:, 0], [1.0, 2.0, 3.0, 4.0])
    assert windows[0].start_ts - T0 == 60 and windows[0].end_ts - T0 == 240


def test_a_long_gap_resets_the_window():
    s = store(window=3, step=60.0, fill_gaps=1, reset_after_gap=True)
    assert len(pushed(s, [0, 60, 120])) == 1
    assert pushed(s, [600, 660]) == []  # a fresh window fills again after the outage
    assert s.adjusted == {"gap_reset": 1}
    (window,) = pushed(s, [720])
    assert window.start_ts - T0 == 600


def test_a_long_gap_is_kept_without_reset_after_gap():
    s = store(window=3, step=60.0, fill_gaps=1)
    pushed(s, [0, 60, 120])
    (window,) = pushed(s, [600])
    assert window.start_ts - T0 == 60
    assert s.adjusted == {}


def test_jitter_below_half_a_step_is_not_a_gap():
    s = store(window=3, step=60.0, fill_gaps=3)
    pushed(s, [0, 61, 119, 185])
    assert s.adjusted == {}


def test_default_rules_change_nothing():
    s = store(window=3)
    pushed(s, [0, 1, 5000, 5001])
    assert s.adjusted == {} and s.dropped == {} and s.accepted == 4
