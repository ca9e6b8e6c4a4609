"""One font catalogue: the corpus and the synthesiser draw their fonts from flywheel.fonts."""

from __future__ import annotations

import pytest

from captioners.synth.corpus import SCRIPTS as SYNTH
from corpus.text import SCRIPTS as CORPUS
from flywheel.fonts import SCRIPT_FONTS, installed, script_fonts


def test_both_text_sources_use_the_one_catalogue() -> None:
    catalogue = {(f.filename, f.index) for fonts in SCRIPT_FONTS.values() for f in fonts}
    for spec in CORPUS:
        assert spec.fonts == SCRIPT_FONTS[spec.code]
    for code, spec in SYNTH.items():
        assert code in SCRIPT_FONTS and set(spec.fonts) <= catalogue


def test_styles_choose_and_order_fonts_and_unknown_styles_are_refused() -> None:
    picked = script_fonts("Hans", ["serif", "sans-serif"])
    assert [f.style for f in picked] == ["serif", "sans-serif"] and {f.index for f in picked} == {2}
    with pytest.raises(KeyError, match="no font of style"):
        script_fonts("Latn", ["gothic"])
    found = installed(SCRIPT_FONTS["Latn"])
    assert all(path.name == choice.filename and path.is_file() for path, choice in found)
