"""Hard cases beyond noise, as the truth's `kinds` name them: other names of one person (an English
given name, Cantonese romanisation), records keyed into the wrong fields (a company as a person, a
whole Chinese name in the family-name field) and related companies at one address.

Entity-level choices (who has an English name, which companies are related) are made here from
their own random stream after the entities exist, so the rest of the population stays as it was;
the systems then decide per record whether they show it (`apply_*`, drawing from the noise book's
kind stream).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.generate.config import GeneratorConfig
from pipelines.generate.entities import ascii_fold, e164_column, refresh_org_names
from pipelines.generate.noise import NoiseBook
from pipelines.generate.pools import Pools

# Hong Kong government (Cantonese) romanisation of the surnames and given-name characters the
# generator draws: 陈大文 is "Chan Tai Man" there, "Chen Dawen" in pinyin.
CANTONESE_SURNAMES = {
    "王": "Wong", "李": "Lee", "张": "Cheung", "刘": "Lau", "陈": "Chan", "杨": "Yeung", "黄": "Wong",
    "吴": "Ng", "赵": "Chiu", "周": "Chow", "徐": "Tsui", "孙": "Suen", "马": "Ma", "朱": "Chu",
    "胡": "Wu", "林": "Lam", "郭": "Kwok", "何": "Ho", "高": "Ko", "罗": "Law", "郑": "Cheng",
    "梁": "Leung", "谢": "Tse", "宋": "Sung", "唐": "Tong", "许": "Hui", "邓": "Tang", "冯": "Fung",
    "韩": "Hon", "曹": "Tso", "曾": "Tsang", "彭": "Pang", "萧": "Siu", "蔡": "Choi", "潘": "Poon",
    "田": "Tin", "董": "Tung", "袁": "Yuen", "余": "Yu", "叶": "Yip", "蒋": "Cheung", "杜": "To",
    "苏": "So", "魏": "Ngai", "程": "Ching", "吕": "Lui", "丁": "Ting", "沈": "Shum", "任": "Yam",
    "姚": "Yiu", "卢": "Lo", "傅": "Fu", "钟": "Chung", "姜": "Keung", "崔": "Tsui", "谭": "Tam",
    "廖": "Liu", "范": "Fan", "汪": "Wong", "陆": "Luk", "金": "Kam", "石": "Shek", "戴": "Tai",
    "贾": "Ka", "韦": "Wai", "夏": "Ha", "邱": "Yau", "方": "Fong", "侯": "Hau", "邹": "Chau",
    "熊": "Hung", "孟": "Mang", "秦": "Chun", "白": "Pak", "江": "Kong", "薛": "Sit", "尹": "Wan",
    "段": "Tuen", "雷": "Lui", "黎": "Lai", "史": "Sze", "龙": "Lung", "陶": "To", "贺": "Ho",
    "顾": "Ku", "毛": "Mo", "龚": "Kung", "邵": "Shiu", "万": "Man", "钱": "Chin", "严": "Yim",
    "赖": "Lai", "洪": "Hung", "莫": "Mok", "孔": "Hung", "汤": "Tong", "温": "Wan", "康": "Hong",
    "施": "Sze", "文": "Man", "伍": "Ng", "庞": "Pong", "颜": "Ngan", "庄": "Chong",
}
CANTONESE_GIVEN = {
    "东": "Tung", "丹": "Tan", "丽": "Lai", "云": "Wan", "亮": "Leung", "伟": "Wai", "佳": "Kai",
    "俊": "Chun", "倩": "Sin", "健": "Kin", "兰": "Lan", "兵": "Ping", "军": "Kwan", "冬": "Tung",
    "凤": "Fung", "凯": "Hoi", "刚": "Kong", "利": "Lei", "勇": "Yung", "华": "Wah", "博": "Pok",
    "国": "Kwok", "坤": "Kwan", "娜": "Na", "娟": "Kuen", "婷": "Ting", "宁": "Ning", "宇": "Yu",
    "小": "Siu", "岩": "Ngam", "峰": "Fung", "帅": "Shui", "帆": "Fan", "平": "Ping", "建": "Kin",
    "强": "Keung", "彬": "Pan", "志": "Chi", "想": "Seung", "慧": "Wai", "成": "Shing", "敏": "Man",
    "文": "Man", "斌": "Pan", "旭": "Yuk", "明": "Ming", "春": "Chun", "晨": "San", "晶": "Ching",
    "杨": "Yeung", "杰": "Kit", "林": "Lam", "柳": "Lau", "桂": "Kwai", "梅": "Mui", "楠": "Nam",
    "欢": "Fun", "欣": "Yan", "波": "Po", "洁": "Kit", "洋": "Yeung", "浩": "Ho", "海": "Hoi",
    "涛": "To", "淑": "Suk", "燕": "Yin", "玉": "Yuk", "玲": "Ling", "珍": "Chun", "琳": "Lam",
    "琴": "Kam", "瑜": "Yu", "瑞": "Sui", "璐": "Lo", "畅": "Cheung", "磊": "Lui", "秀": "Sau",
    "红": "Hung", "艳": "Yim", "芝": "Chi", "花": "Fa", "芳": "Fong", "英": "Ying", "荣": "Wing",
    "莉": "Lei", "莹": "Ying", "萍": "Ping", "超": "Chiu", "辉": "Fai", "金": "Kam", "鑫": "Yam",
    "阳": "Yeung", "雪": "Suet", "雷": "Lui", "霞": "Ha", "静": "Ching", "颖": "Wing", "飞": "Fei",
    "香": "Heung", "鹏": "Pang", "龙": "Lung",
}
# Words that make a related company out of an operating company's name, per name style.
RELATED_WORDS: dict[str, list] = {
    "de": ["Beteiligungs", "Holding", "Immobilien", "Service", "Verwaltungs"],
    "en": ["Holdings", "Property", "Services", "Group"],
    "cn": [("控股", "Holding"), ("投资", "Investment"), ("物业", "Property Management"), ("服务", "Services")],
}


def cantonese_given(given: str) -> str | None:
    """'大文' -> 'Tai Man' (one capitalised syllable per character); None if a character is unknown."""
    if not all(ch in CANTONESE_GIVEN for ch in given):
        return None
    return " ".join(CANTONESE_GIVEN[ch] for ch in given)


def entity_kinds(cols: dict[str, np.ndarray], pools: Pools, config: GeneratorConfig,
                 rng: np.random.Generator) -> None:
    """Choose the Chinese persons who also use an English given name or a Cantonese romanisation."""
    n = len(cols["entity_id"])
    rates = config.kinds
    ordinary_cn = ((cols["party_type"] == "person") & (cols["name_origin"] == "cn")
                   & (cols["hard_case"] == None))  # noqa: E711
    english = ordinary_cn & (rng.random(n) < rates.english_given_name)
    pick = rng.integers(0, 10**6, n)
    male = cols["sex"] == "M"
    names = np.where(male, pools.en_given_m[pick % len(pools.en_given_m)],
                     pools.en_given_f[pick % len(pools.en_given_f)])
    cols["_english_given"] = np.where(english, names, None)  # type: ignore[call-overload]
    family = np.array([CANTONESE_SURNAMES.get(f) if ok else None
                       for f, ok in zip(cols["family_name"], ordinary_cn, strict=True)], dtype=object)
    given = np.array([cantonese_given(g) if f is not None else None
                      for g, f in zip(cols["given_name"], family, strict=True)], dtype=object)
    cantonese = (given != None) & (rng.random(n) < rates.cantonese_romanisation)  # noqa: E711
    cols["_cantonese_family"] = np.where(cantonese, family, None)  # type: ignore[call-overload]
    cols["_cantonese_given"] = np.where(cantonese, given, None)  # type: ignore[call-overload]


def related_companies(cols: dict[str, np.ndarray], config: GeneratorConfig,
                      rng: np.random.Generator) -> None:
    """Groups of 2-3 companies at one address with related names ("Hövel Druckerei GmbH",
    "Hövel Druckerei Beteiligungs GmbH"): different customers, often one without a register number.

    Drawn from the tail of the organizations (company owners come from the head).
    """
    n = len(cols["entity_id"])
    cols["_registration_hidden"] = np.zeros(n, dtype=bool)
    orgs = np.flatnonzero((cols["party_type"] == "organization") & (cols["hard_case"] == None))  # noqa: E711
    total = int(round(config.hard_negatives.related_company * int((cols["party_type"] == "organization").sum())))
    group_no = 0
    for country in ("CN", "DE", "US"):
        pool = orgs[cols["country"][orgs] == country][::-1][: total // 2]
        sizes = rng.choice([2, 3], len(pool) // 2 + 1, p=[0.75, 0.25])
        sizes = sizes[np.cumsum(sizes) <= len(pool)]
        start = 0
        for size in sizes.tolist():
            members = pool[start:start + size]
            start += size
            group_no += 1
            _relate(cols, rng, members, f"RC{group_no:07d}")
    cols["e164_landline"] = e164_column(cols, "landline")  # followers may share the head's line


def _relate(cols: dict[str, np.ndarray], rng: np.random.Generator, members: np.ndarray, group: str) -> None:
    head, followers = members[0], members[1:]
    cols["hard_case"][members] = "related_company"
    cols["hard_case_group"][members] = group
    for c in ["street", "street_native", "house_number", "postcode", "city", "city_native",
              "district", "district_native", "state", "_zip4", "_city_idx", "country", "locale"]:
        cols[c][followers] = cols[c][head]
    cn = cols["country"][head] == "CN"
    style = "cn" if cn else "en" if cols["org_legal_form"][head] in ("LTD", "INC", "LLC", "CORP") else "de"
    words = RELATED_WORDS[style]
    chosen = rng.permutation(len(words))[: len(followers)]
    for follower, w in zip(followers.tolist(), chosen.tolist(), strict=True):
        word = words[w]
        cols["org_legal_form"][follower] = cols["org_legal_form"][head]
        if cn:
            hanzi, latin = word
            cols["org_name_base"][follower] = f"{cols['org_name_base'][head]} {latin}"
            cols["org_name_native"][follower] = cols["org_name_native"][head][:-4] + hanzi + "有限公司"
        else:
            cols["org_name_base"][follower] = f"{cols['org_name_base'][head]} {word}"
            cols["org_name_native"][follower] = None
    refresh_org_names(cols, followers)
    share_line = rng.random(len(followers)) < 0.7
    for c in ["landline_ndc", "landline_sub"]:
        cols[c][followers[share_line]] = cols[c][head]
    share_mail = rng.random(len(followers)) < 0.5
    tld = ".com.cn" if cn else ".com" if cols["country"][head] == "US" else ".de"
    for follower, shared in zip(followers.tolist(), share_mail.tolist(), strict=True):
        own = mail_domain(cols["org_name_base"][follower]) + tld
        cols["email"][follower] = cols["email"][head] if shared else f"info@{own}"
    # one member of the group is written without its register number (it is often not known)
    cols["_registration_hidden"][members[rng.integers(0, len(members))]] = True


def mail_domain(name: str) -> str:
    """'Hövel Druckerei Holding' -> 'hoevel-druckerei-holding' (as the entities' e-mails are built)."""
    return "-".join((ascii_fold(pa.array([name], pa.string())).to_pylist()[0] or "").split())


# --- per record ---------------------------------------------------------------------------------

def apply_other_names(view, book: NoiseBook, config: GeneratorConfig, given: np.ndarray,
                      family: np.ndarray, latin: np.ndarray) -> None:
    """English given names and Cantonese romanisation on `latin` records (in place)."""
    english = view["_english_given"]
    use_english = book.choose_kind("english_given_name", latin & (english != None),  # noqa: E711
                                   config.kinds.english_given_name_use)
    given[use_english] = english[use_english]
    canto_family, canto_given = view["_cantonese_family"], view["_cantonese_given"]
    use_canto = book.choose_kind("cantonese_romanisation", latin & (canto_family != None),  # noqa: E711
                                 config.kinds.cantonese_use)
    family[use_canto] = canto_family[use_canto]
    given[use_canto & ~use_english] = canto_given[use_canto & ~use_english]
