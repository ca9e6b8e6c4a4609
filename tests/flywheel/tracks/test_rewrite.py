"""Intent-preserving expansion: counts, negations, quoted text and content survive; conflicting detail does not."""

import pytest

from flywheel.tracks.rewrite import core_of, detail_phrases, expand_prompt, intent_violations, negated_terms

CASES = [
    ("three coffee cups, no saucers", ["a coffee cup and saucer on a wooden table", "a mug next to a laptop"]),
    ("can you make a cat pls", ["a ginger cat sitting on a windowsill"]),
    ('a shop sign that says "OPEN" in black letters', ["a red sign with white letters in front of a store"]),
    ("draw two dogs without collars", ["a dog wearing a red collar", "a black dog in the snow"]),
]


@pytest.mark.parametrize(("prompt", "captions"), CASES)
def test_expansion_keeps_intent_and_adds_detail(prompt, captions):
    rewrite = expand_prompt(prompt, detail_phrases(captions))
    assert intent_violations(prompt, rewrite) == []
    assert core_of(prompt) in rewrite and len(rewrite) > len(prompt)


def test_conflicting_details_are_refused():
    cups = expand_prompt("three coffee cups, no saucers", ["with a saucer", "on a saucer", "on a table"])
    assert cups.count("saucer") == 1 and "on a table" in cups
    sign = expand_prompt('a sign that says "OPEN" in black letters', ["with white letters"])
    assert "white letters" not in sign
    assert "collar" not in expand_prompt("two dogs without collars", ["wearing a red collar"]).replace("collars", "")
    assert "four" not in expand_prompt("three cups", ["next to four plates"])


def test_violations_name_what_is_lost():
    problems = " ".join(intent_violations("three coffee cups, no saucers", "a coffee cup and saucer"))
    assert "three" in problems and "saucer" in problems
    assert intent_violations('the word "HELLO"', "the word HELO") != []
    assert negated_terms("a room without windows and no people") == {"window", "people"}
    assert core_of("need a pic of a red bus pls") == "a red bus"
