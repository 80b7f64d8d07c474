"""matching.loglines: what a shaped line may hold, and the dict it stands for."""
from __future__ import annotations

import pytest

from matching.loglines import Shape, as_dict, plain


@pytest.mark.parametrize("text", ["client-7", "BTC-USD", "é", "a=b", "50%", "0193abcd-0000-7000-8000-000000000001"])
def test_plain_takes_text_that_needs_no_quoting_in_either_format(text: str) -> None:
    assert plain(text) and plain(text, remember=False)


@pytest.mark.parametrize("text", ["", " ", "a b", 'say "hi"', "back\\slash", "tab\there", "new\nline", "del\x7f",
                                  "line\u2028sep", "nul\x00"])
def test_plain_refuses_what_a_line_would_have_to_quote(text: str) -> None:
    assert not plain(text) and not plain(text, remember=False)
    assert not plain(text)  # and refused again: never remembered


def test_a_shaped_line_stands_for_the_dict_of_its_fields_in_order() -> None:
    shape = Shape("order_id", "trade_id", ints=("trade_id",))
    assert list(as_dict((shape, ("order matched", "o1", 5))).items()) == [
        ("event", "order matched"), ("order_id", "o1"), ("trade_id", 5)]
    with pytest.raises(ValueError):
        as_dict((shape, ("order matched", "o1")))  # a value short
    with pytest.raises(AssertionError):
        Shape("order_id", ints=("seq",))  # an int that is not a field
