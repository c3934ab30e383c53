"""清音化かな・外字 (seion-ised kana and gaiji): the search key for kana names and the 外字 count.

清音化 (cards.md §4.1). No public Juki-net specification exists; this is our own rule, built
from municipal practice, and the stored 清音化かな氏名 (item 5) is always ``to_seion(name_kana)``:

1. NFKC (half-width ｶﾞ → ガ, full-width space → space), hiragana → katakana;
   remove whitespace and the middle dot ・.
2. ヂ → シ and ヅ → ス, i.e. ヂ is folded with ジ and ヅ with ズ (the municipal code does the
   same). Clerks and residents use both spellings for one sound (ちぢみ/ちじみ, つづき/つずき),
   so folding them together finds more of the same person.
3. ヴ is folded with バ行 (so it ends as ハ行): ヴァ ヴィ ヴゥ ヴェ ヴォ → バ ビ ブ ベ ボ,
   ヴャ ヴュ ヴョ → ビャ ビュ ビョ, any other ヴ → ブ. The usual alternative spelling of a ヴ
   name is with バ行 (ヴィクトリア / ビクトリア, ヴァイオリン / バイオリン), never with ウ, so
   ヴ→ウ would miss exactly the variants a search has to find. ヷ ヸ ヹ ヺ simply lose their
   dakuten (→ ワ ヰ ヱ ヲ → step 5).
4. Every other dakuten/handakuten is removed by Unicode decomposition (NFD, drop U+3099 and
   U+309A, NFC), so ガ→カ, ザ→サ, ダ→タ, バ/パ→ハ without a hand table.
5. Small kana → full size (ァ→ア, ッ→ツ, ャ→ヤ, ヮ→ワ, ヵ→カ, ヶ→ケ, and the small katakana
   extensions ㇰ…ㇿ), found through the Unicode character names; old kana ヲ→オ, ヰ→イ, ヱ→エ.
6. The long-vowel mark ー is kept, and オウ/オオ are not folded: that would merge distinct
   names (オオタ 太田 / オウタ 王田) for little gain.

外字 (cards.md §4.2): a character counts as 外字 when the terminal cannot show it from the
standard set. The set chosen here is JIS X 0208 (the 6,879 characters of the JIS level 1 and 2
kanji and non-kanji rows) plus ASCII and JIS X 0201 half-width katakana. Membership is tested
with Python's ``shift_jis`` codec, which holds exactly JIS X 0201 + JIS X 0208 (unlike
``euc_jp``, which also encodes JIS X 0212, and ``cp932``, which adds NEC/IBM extensions such
as ① or 髙). Characters that Windows maps to a different Unicode code point for the same JIS X
0208 cell (～ FF5E for 〜, － FF0D for −, ￠ ￡ ￢ ∥) are in the set as well: they are found by
encoding with ``cp932`` and decoding the bytes with ``shift_jis``. A variation-selector
sequence (e.g. an IVS kanji) counts as one 外字, because the selected glyph is not in the set.
"""

from __future__ import annotations

import re
import unicodedata

import jaconv

_DAKUTEN = "\u3099"
_HANDAKUTEN = "\u309a"
_REMOVED = frozenset(" \t\r\n\u3000・")
_SOUND_FOLDS = str.maketrans({"ヂ": "シ", "ヅ": "ス"})
_VU_SYLLABLES = {"ァ": "バ", "ィ": "ビ", "ゥ": "ブ", "ェ": "ベ", "ォ": "ボ"}
_VU = re.compile("ヴ([ァィゥェォャュョ]?)")


def _fold_vu(match: re.Match[str]) -> str:
    small = match.group(1)
    if small in _VU_SYLLABLES:
        return _VU_SYLLABLES[small]
    return "ビ" + small if small else "ブ"


_OLD_KANA = str.maketrans({"ヲ": "オ", "ヰ": "イ", "ヱ": "エ"})


def _small_to_large_table() -> dict[int, str]:
    """Small katakana → full size, via the character names (no hand-typed table to get wrong)."""
    table: dict[int, str] = {}
    blocks = [*range(0x30A0, 0x3100), *range(0x31F0, 0x3200)]
    for cp in blocks:
        name = unicodedata.name(chr(cp), "")
        if name.startswith("KATAKANA LETTER SMALL "):
            large = name.replace("SMALL ", "", 1)
            try:
                table[cp] = unicodedata.lookup(large)
            except KeyError:
                continue
    return table


_SMALL_TO_LARGE = _small_to_large_table()


def normalize_kana(s: str) -> str:
    """NFKC, hiragana → katakana, whitespace removed: the comparable form of a kana string."""
    folded = jaconv.hira2kata(unicodedata.normalize("NFKC", s))
    return "".join(ch for ch in folded if not ch.isspace())


def to_seion(kana: str) -> str:
    """清音化かな: the search key of a kana name (rules in the module docstring)."""
    s = jaconv.hira2kata(unicodedata.normalize("NFKC", kana))
    s = "".join(ch for ch in s if ch not in _REMOVED and not ch.isspace())
    s = _VU.sub(_fold_vu, s.translate(_SOUND_FOLDS))
    s = unicodedata.normalize("NFD", s)
    s = "".join(ch for ch in s if ch not in (_DAKUTEN, _HANDAKUTEN))
    s = unicodedata.normalize("NFC", s)
    return s.translate(_SMALL_TO_LARGE).translate(_OLD_KANA)


def _is_kana_char(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x3041 <= cp <= 0x3096  # hiragana letters
        or 0x309D <= cp <= 0x309E  # ゝ ゞ
        or 0x30A1 <= cp <= 0x30FA  # katakana letters
        or 0x30FC <= cp <= 0x30FE  # ー ヽ ヾ
        or 0x31F0 <= cp <= 0x31FF  # small katakana extensions
    )


def is_kana(s: str) -> bool:
    """True for a non-empty kana string: kana letters, ー, iteration marks, ・ and spaces.

    Half-width katakana is accepted (NFKC folds it). At least one kana letter is required, so
    "ー" or " " alone is not a name.
    """
    text = unicodedata.normalize("NFKC", s)
    has_letter = False
    for ch in text:
        if _is_kana_char(ch):
            has_letter = has_letter or ch not in "ーヽヾゝゞ"
        elif ch != "・" and not ch.isspace():
            return False
    return has_letter


def _is_variation_selector(ch: str) -> bool:
    cp = ord(ch)
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


def is_standard_char(ch: str) -> bool:
    """True if the terminal's standard set (ASCII, JIS X 0201 kana, JIS X 0208) holds ``ch``."""
    if ch.isascii():
        return True
    try:
        ch.encode("shift_jis")
        return True
    except UnicodeEncodeError:
        pass
    try:
        ch.encode("cp932").decode("shift_jis")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False
    return True


def count_gaiji(s: str | None) -> int:
    """外字数: characters (or variation-selector sequences) outside the standard set."""
    if not s:
        return 0
    try:
        s.encode("shift_jis")  # the common case, all in the standard set, in one C call
        return 0
    except UnicodeEncodeError:
        pass
    count = 0
    i = 0
    while i < len(s):
        j = i + 1
        while j < len(s) and _is_variation_selector(s[j]):
            j += 1
        if j > i + 1 or not is_standard_char(s[i]):
            count += 1
        i = j
    return count
