"""清音化かな and 外字: the documented folding rules, and which characters count as 外字."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.kana import count_gaiji, is_kana, is_standard_char, normalize_kana, to_seion

# --- 清音化 known answers (each row one rule from the module docstring) -------------------------


@pytest.mark.parametrize(
    ("kana", "seion"),
    [
        ("ヤマダ タロウ", "ヤマタタロウ"),  # space removed, ダ → タ
        ("やまだ　たろう", "ヤマタタロウ"),  # hiragana, full-width space
        ("ｶﾞｯｺｳ", "カツコウ"),  # half-width, voiced, small ッ
        ("ガギグゲゴ", "カキクケコ"),
        ("ザジズゼゾ", "サシスセソ"),
        ("ダヂヅデド", "タシステト"),  # ヂ → シ, ヅ → ス (folded with ジ/ズ)
        ("バビブベボ", "ハヒフヘホ"),
        ("パピプペポ", "ハヒフヘホ"),
        ("ヴィクトリア", "ヒクトリア"),  # ヴィ → ビ → ヒ
        ("ヴァヴゥヴェヴォ", "ハフヘホ"),
        ("ヴュヴ", "ヒユフ"),  # ヴュ → ビュ, lone ヴ → ブ
        ("ｳﾞｨ", "ヒ"),
        ("ビクトリア", "ヒクトリア"),
        ("ァィゥェォッャュョヮヵヶ", "アイウエオツヤユヨワカケ"),
        ("ㇰㇱㇳ", "クシト"),  # small katakana extensions (Ainu)
        ("ヲヰヱ", "オイエ"),  # old kana
        ("ゐゑを", "イエオ"),
        ("ヷヸヹヺ", "ワイエオ"),
        ("ジョン・スミス", "シヨンスミス"),  # ・ removed
        ("ｼﾞｮﾝ･ｽﾐｽ", "シヨンスミス"),  # half-width ･ too
        ("サトー", "サトー"),  # ー kept
        ("オウタ", "オウタ"),  # no long-vowel folding
        ("", ""),
    ],
)
def test_to_seion_known_answers(kana: str, seion: str) -> None:
    assert to_seion(kana) == seion


def test_dji_and_dzu_fold_with_ji_and_zu() -> None:
    assert to_seion("チヂミ") == to_seion("チジミ")
    assert to_seion("ツヅキ") == to_seion("ツズキ")
    assert to_seion("ヴァイオリン") == to_seion("バイオリン")
    assert to_seion("ヴィクトリア") == to_seion("ビクトリア")
    assert to_seion("ヴ") == to_seion("ブ")


def test_normalize_kana() -> None:
    assert normalize_kana("やまだ　たろう") == "ヤマダタロウ"
    assert normalize_kana("ﾔﾏﾀﾞ ﾀﾛｳ") == "ヤマダタロウ"
    assert normalize_kana("ヤマダ・タロウ") == "ヤマダ・タロウ"  # only whitespace is removed


@pytest.mark.parametrize(
    "s", ["ヤマダ タロウ", "やまだ", "ﾔﾏﾀﾞ", "ジョン・スミス", "サトー", "ゞあ"]
)
def test_is_kana_accepts(s: str) -> None:
    assert is_kana(s)


@pytest.mark.parametrize("s", ["", " ", "ー", "・", "山田", "ヤマダ1", "Yamada", "ヤマダ\x00"])
def test_is_kana_refuses(s: str) -> None:
    assert not is_kana(s)


# --- 清音化 properties -------------------------------------------------------------------------

HIRAGANA = [chr(c) for c in range(0x3041, 0x3097)]
KATAKANA = [chr(c) for c in range(0x30A1, 0x30FB)]
HALF_WIDTH = [chr(c) for c in range(0xFF66, 0xFFA0)]
KANA_ALPHABET = HIRAGANA + KATAKANA + HALF_WIDTH + list(" 　・ーヽヾゝゞ")

kana_text = st.text(st.sampled_from(KANA_ALPHABET), max_size=20)
hiragana_text = st.text(st.sampled_from(HIRAGANA), max_size=20)

VOICED_OR_SMALL_OR_OLD = set("ヂヅヴヲヰヱ") | {
    ch for ch in KATAKANA if "SMALL" in unicodedata.name(ch)
}


@settings(max_examples=200)
@given(st.text(max_size=30))
def test_to_seion_is_idempotent_on_any_text(s: str) -> None:
    once = to_seion(s)
    assert to_seion(once) == once


@settings(max_examples=200)
@given(kana_text)
def test_to_seion_output_is_plain_full_size_katakana(s: str) -> None:
    out = to_seion(s)
    for ch in out:
        assert ch not in VOICED_OR_SMALL_OR_OLD, (s, out)
        decomposed = unicodedata.normalize("NFD", ch)
        assert "\u3099" not in decomposed and "\u309a" not in decomposed, (s, out)
        assert not ("\u3041" <= ch <= "\u309f"), (s, out)  # no hiragana left
        assert not ch.isspace() and ch != "・"


@settings(max_examples=200)
@given(hiragana_text)
def test_hiragana_and_katakana_give_the_same_key(s: str) -> None:
    katakana = "".join(chr(ord(c) + 0x60) for c in s)  # the Unicode blocks are parallel
    assert to_seion(s) == to_seion(katakana)


@settings(max_examples=200)
@given(kana_text)
def test_seion_key_ignores_spacing(s: str) -> None:
    assert to_seion(s) == to_seion(s.replace(" ", "").replace("　", "")) == to_seion(s + " ")


# --- 外字 ------------------------------------------------------------------------------------


def _jis_x_0208() -> list[str]:
    """Every JIS X 0208 character, enumerated through EUC-JP two-byte codes (rows 1–94)."""
    chars = []
    for hi in range(0xA1, 0xFF):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("euc_jp"))
            except UnicodeDecodeError:
                continue
    return chars


def _jis_x_0212_only(limit: int) -> list[str]:
    chars = []
    for hi in range(0xB0, 0xFF):
        for lo in range(0xA1, 0xFF):
            try:
                ch = bytes([0x8F, hi, lo]).decode("euc_jp")
            except UnicodeDecodeError:
                continue
            try:
                ch.encode("iso2022_jp")  # also in 0208 under another code?
            except UnicodeEncodeError:
                chars.append(ch)
            if len(chars) >= limit:
                return chars
    return chars


def test_all_of_jis_x_0208_is_standard() -> None:
    chars = _jis_x_0208()
    assert len(chars) == 6879
    assert [c for c in chars if not is_standard_char(c)] == []
    assert count_gaiji("".join(chars)) == 0


def test_jis_x_0212_kanji_are_gaiji() -> None:
    chars = _jis_x_0212_only(500)
    assert len(chars) == 500
    assert count_gaiji("".join(chars)) == 500


@pytest.mark.parametrize(
    ("text", "gaiji"),
    [
        ("山田太郎", 0),
        ("宮城県仙台市青葉区国分町三丁目7番1号", 0),
        ("凜熙", 0),  # added to JIS X 0208 in 1990
        ("髙橋", 1),  # 髙 is an IBM extension in cp932, not JIS X 0208
        ("山﨑", 1),
        ("𠮷田", 1),  # outside the BMP
        ("丂", 1),  # JIS X 0212 only
        ("①番地", 1),  # NEC special row
        ("葛\U000e0100城市", 1),  # IVS sequence counts once
        ("髙\U000e0100", 1),  # gaiji base + selector still one unit
        ("～－￠￡￢∥", 0),  # Windows code points for JIS X 0208 cells
        ("〜−", 0),
        ("ABC-123 ｱｲｳ", 0),  # ASCII and half-width katakana
        ("", 0),
        (None, 0),
    ],
)
def test_count_gaiji_known(text: str | None, gaiji: int) -> None:
    assert count_gaiji(text) == gaiji


@settings(max_examples=200)
@given(st.text(max_size=15), st.text(max_size=15))
def test_count_gaiji_is_additive_and_bounded(a: str, b: str) -> None:
    total = count_gaiji(a + b)
    assert 0 <= total <= len(a + b)
    if not b or not ("\ufe00" <= b[0] <= "\ufe0f" or "\U000e0100" <= b[0] <= "\U000e01ef"):
        assert total == count_gaiji(a) + count_gaiji(b)


@given(st.text(alphabet=st.sampled_from("山田太郎髙﨑𠮷丂aｱ・\ufe00\U000e0100 凜"), max_size=12))
def test_count_gaiji_counts_each_character_or_variation_sequence_outside_the_set(s: str) -> None:
    # reference: walk the string, a base character with variation selectors counts as one
    expected, i = 0, 0
    while i < len(s):
        j = i + 1
        while j < len(s) and (0xFE00 <= ord(s[j]) <= 0xFE0F or 0xE0100 <= ord(s[j]) <= 0xE01EF):
            j += 1
        expected += 1 if j > i + 1 or not is_standard_char(s[i]) else 0
        i = j
    assert count_gaiji(s) == expected
