"""The node's track-reset rule: a stamp going back or a new resolution starts a new sequence."""

from vknet_core.sequence_break import SequenceBreaks


def test_stamp_back_and_resolution_change_break_the_sequence():
    b = SequenceBreaks()
    s = 1_000_000_000
    assert b.check(10 * s, (96, 160)) is None  # first frame
    assert b.check(11 * s, (96, 160)) is None
    assert b.check(11 * s, (96, 160)) is None  # equal stamp: not a jump back
    assert b.check(5 * s + 500_000_000, (96, 160)) == "time jumped back by 5.500 s"
    assert b.check(6 * s, (64, 96)) == "resolution changed from 160x96 to 96x64"
    assert b.check(None, (64, 96)) is None  # no stamp (video file): resolution only
    assert b.check(None, (96, 160)) == "resolution changed from 96x64 to 160x96"
    b.forget()
    assert b.check(1, (10, 10)) is None
