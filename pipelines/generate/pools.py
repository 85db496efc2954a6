"""Value pools the generator samples from: names, streets, cities, company words, legal forms.

Built once per run (Faker with a fixed seed, pypinyin and the `nicknames` data over the few thousand
distinct pool values); the hot path only indexes into these arrays with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# German cities: name, first two postcode digits, area code (without trunk 0), subscriber digits.
DE_CITIES = [
    ("Berlin", "10", "30", 7), ("Hamburg", "20", "40", 7), ("München", "80", "89", 7),
    ("Köln", "50", "221", 6), ("Frankfurt am Main", "60", "69", 7), ("Stuttgart", "70", "711", 6),
    ("Düsseldorf", "40", "211", 6), ("Leipzig", "04", "341", 6), ("Dortmund", "44", "231", 6),
    ("Essen", "45", "201", 6), ("Bremen", "28", "421", 6), ("Dresden", "01", "351", 6),
    ("Hannover", "30", "511", 6), ("Nürnberg", "90", "911", 6),
]
# US cities: name, state, first three ZIP digits, area code (subscriber numbers have 7 digits).
US_CITIES = [
    ("New York", "NY", "100", "212"), ("Los Angeles", "CA", "900", "213"), ("Chicago", "IL", "606", "312"),
    ("Houston", "TX", "770", "713"), ("Phoenix", "AZ", "850", "602"), ("Philadelphia", "PA", "191", "215"),
    ("San Antonio", "TX", "782", "210"), ("San Diego", "CA", "921", "619"), ("Dallas", "TX", "752", "214"),
    ("Boston", "MA", "021", "617"), ("Seattle", "WA", "981", "206"), ("Denver", "CO", "802", "303"),
    ("Atlanta", "GA", "303", "404"), ("Springfield", "IL", "627", "217"), ("Portland", "OR", "972", "503"),
    ("Columbus", "OH", "432", "614"),
]
US_STREET_SUFFIXES = ["St", "Ave", "Rd", "Blvd", "Dr", "Ln", "Ct", "Way"]
US_CLASSIC_STREETS = ["Main", "Oak", "Maple", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill",
                      "Park", "Sunset", "Lincoln", "Jackson", "Church", "Spring", "Highland", "Madison"]
# Chinese cities: hanzi, pinyin, postcode prefix, area code, districts (hanzi, pinyin), RIC region
# codes that python-stdnum accepts for every birth year we generate (checked in the tests).
CN_CITIES = [
    ("北京", "Beijing", "100", "10", [("朝阳区", "Chaoyang"), ("海淀区", "Haidian"), ("东城区", "Dongcheng"),
     ("西城区", "Xicheng"), ("丰台区", "Fengtai")], ["110101", "110102", "110105", "110106", "110108"]),
    ("上海", "Shanghai", "200", "21", [("浦东新区", "Pudong"), ("徐汇区", "Xuhui"), ("静安区", "Jing'an"),
     ("黄浦区", "Huangpu"), ("长宁区", "Changning")], ["310101", "310104", "310105", "310106", "310107"]),
    ("广州", "Guangzhou", "510", "20", [("天河区", "Tianhe"), ("越秀区", "Yuexiu"), ("海珠区", "Haizhu"),
     ("白云区", "Baiyun")], ["440100"]),
    ("深圳", "Shenzhen", "518", "755", [("南山区", "Nanshan"), ("福田区", "Futian"), ("罗湖区", "Luohu"),
     ("宝安区", "Bao'an")], ["440300"]),
    ("成都", "Chengdu", "610", "28", [("武侯区", "Wuhou"), ("锦江区", "Jinjiang"), ("青羊区", "Qingyang")],
     ["510100"]),
    ("杭州", "Hangzhou", "310", "571", [("西湖区", "Xihu"), ("上城区", "Shangcheng"), ("拱墅区", "Gongshu")],
     ["330100"]),
    ("武汉", "Wuhan", "430", "27", [("江汉区", "Jianghan"), ("武昌区", "Wuchang"), ("洪山区", "Hongshan")],
     ["420100"]),
    ("南京", "Nanjing", "210", "25", [("玄武区", "Xuanwu"), ("鼓楼区", "Gulou"), ("秦淮区", "Qinhuai")],
     ["320100"]),
    ("天津", "Tianjin", "300", "22", [("和平区", "Heping"), ("南开区", "Nankai"), ("河西区", "Hexi")],
     ["120101", "120103", "120104"]),
    ("西安", "Xi'an", "710", "29", [("雁塔区", "Yanta"), ("碑林区", "Beilin"), ("未央区", "Weiyang")],
     ["610100"]),
]
CN_STREET_ROOTS = ["建国", "人民", "解放", "中山", "长安", "和平", "东风", "朝阳", "新华", "胜利", "光明",
                   "文化", "友谊", "学院", "科技", "南京", "黄河", "长江", "青年", "复兴", "振兴", "团结",
                   "幸福", "花园", "滨江", "金融", "天府", "世纪", "明珠", "湖滨"]
CN_STREET_SUFFIXES = [("路", "Lu"), ("街", "Jie"), ("大道", "Dadao")]
DE_CLASSIC_STREETS = ["Hauptstraße", "Bahnhofstraße", "Schulstraße", "Gartenstraße", "Dorfstraße",
                      "Bergstraße", "Kirchstraße", "Lindenstraße", "Waldstraße", "Ringstraße",
                      "Goethestraße", "Schillerstraße", "Friedrichstraße", "Mozartstraße", "Am Markt"]
# Very common full names (hard negatives: many different people in one city share them).
COMMON_NAMES_DE = [("Thomas", "Müller", "M"), ("Michael", "Schmidt", "M"), ("Stefan", "Schneider", "M"),
                   ("Andreas", "Fischer", "M"), ("Anna", "Schmidt", "F"), ("Julia", "Meyer", "F")]
COMMON_NAMES_US = [("James", "Smith", "M"), ("Michael", "Johnson", "M"), ("Robert", "Williams", "M"),
                   ("Mary", "Brown", "F"), ("Jennifer", "Jones", "F"), ("David", "Miller", "M")]
COMMON_NAMES_CN = [("伟", "王", "M"), ("娜", "李", "F"), ("伟", "张", "M"), ("芳", "王", "F"),
                   ("伟", "李", "M"), ("洋", "刘", "M"), ("敏", "张", "F"), ("静", "王", "F")]

DE_INDUSTRIES = ["Bau", "Logistik", "Immobilien", "Consulting", "Software", "Maschinenbau", "Handel",
                 "Elektrotechnik", "Metallbau", "Autohaus", "Gastronomie", "Medizintechnik",
                 "Spedition", "Energie", "Druckerei"]
DE_BRANDS = ["Nordwind", "Rheinland", "Isar", "Spree", "Elbe", "Hanse", "Alpen", "Taunus", "Weser",
             "Main", "Schwarzwald", "Sonnen", "Blau", "Adler", "Eichen", "Linden", "Kristall", "Falken"]
US_INDUSTRIES = ["Consulting", "Trucking", "Realty", "Plumbing", "Roofing", "Dental Group", "Auto Repair",
                 "Software", "Landscaping", "Construction", "Printing", "Logistics", "Bakery"]
EN_INDUSTRIES = ["Consulting", "Trading", "Solutions", "Holdings", "Engineering", "Services"]
CN_INDUSTRIES = [("科技", "Technology"), ("贸易", "Trading"), ("物流", "Logistics"), ("建设", "Construction"),
                 ("信息技术", "Information Technology"), ("实业", "Industrial"), ("医药", "Pharmaceutical"),
                 ("食品", "Food"), ("电子", "Electronics"), ("网络", "Network")]
# Legal forms: code -> (short form as most systems write it, long/variant forms).
LEGAL_FORMS = {
    "GMBH": ("GmbH", ["Gesellschaft mit beschränkter Haftung", "G.m.b.H.", "Gesellschaft mbH"]),
    "AG": ("AG", ["Aktiengesellschaft"]),
    "KG": ("KG", ["Kommanditgesellschaft"]),
    "LTD": ("Ltd", ["Limited", "Ltd.", "LTD"]),
    "CO_LTD": ("Co., Ltd.", ["Company Limited", "Co. Ltd", "Co.,Ltd."]),
    "INC": ("Inc.", ["Incorporated", "Inc", "INC"]),
    "LLC": ("LLC", ["L.L.C.", "Limited Liability Company"]),
    "CORP": ("Corp.", ["Corporation", "Corp"]),
}


@dataclass(frozen=True)
class Pools:
    """Distinct values the generator draws from (numpy object arrays, aligned where noted)."""

    de_given_m: np.ndarray
    de_given_f: np.ndarray
    de_family: np.ndarray
    en_given_m: np.ndarray
    en_given_f: np.ndarray
    en_family: np.ndarray
    cn_given_m: np.ndarray          # hanzi
    cn_given_f: np.ndarray
    cn_family: np.ndarray           # hanzi, weighted by frequency (cn_family_p)
    cn_family_p: np.ndarray
    pinyin: dict[str, str]          # hanzi name part -> pinyin ("秀英" -> "Xiuying")
    nicknames: dict[str, list[str]]  # lower-case given name -> real nicknames, capitalised
    de_streets: np.ndarray
    cn_streets: np.ndarray          # hanzi, aligned with cn_streets_pinyin
    cn_streets_pinyin: np.ndarray
    cn_brands: np.ndarray           # hanzi, aligned with cn_brands_pinyin
    cn_brands_pinyin: np.ndarray
    # the first cn_common_brands are Faker's company prefixes, drawn first; the rest pair their
    # characters anew ("华通"), drawn only when a name is taken in its city: China registers a
    # company name once per area, and at 1M records the prefixes alone repeat in every city
    cn_common_brands: int
    us_streets: np.ndarray          # "Maple Ave", "Johnson Rd"


def to_pinyin(text: str) -> str:
    """Toneless pinyin of a name part, syllables joined and capitalised ("秀英" -> "Xiuying")."""
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(text)).replace("ü", "v").capitalize()


def _nickname_map(names: list[str]) -> dict[str, list[str]]:
    from nicknames import NickNamer

    namer = NickNamer()
    found = {}
    for name in sorted(set(names)):
        nicks = sorted(n.capitalize() for n in namer.nicknames_of(name.lower()) if len(n) >= 3)
        if nicks:
            found[name.lower()] = nicks
    return found


@lru_cache(maxsize=4)
def build_pools(seed: int) -> Pools:
    """Build every pool once; Faker is seeded so the pools (and thus the data) depend on seed only."""
    from faker import Faker
    from faker.providers.company.zh_CN import Provider as CnCompany
    from faker.providers.person.de_DE import Provider as DePerson
    from faker.providers.person.en_GB import Provider as EnPerson
    from faker.providers.person.zh_CN import Provider as CnPerson

    def arr(values) -> np.ndarray:
        return np.array(sorted(set(values)), dtype=object)

    de_family = arr(DePerson.last_names)
    en_family = arr(EnPerson.last_names)
    cn_family_weights = dict(CnPerson.last_names)
    cn_family = np.array(sorted(cn_family_weights), dtype=object)
    weights = np.array([cn_family_weights[f] for f in cn_family], dtype=float)

    faker = Faker("de_DE")
    faker.seed_instance(seed)
    de_streets = sorted(set(DE_CLASSIC_STREETS) | {faker.street_name() for _ in range(400)})

    cn_streets = sorted(root + suffix for root in CN_STREET_ROOTS for suffix, _ in CN_STREET_SUFFIXES)
    suffix_pinyin = dict(CN_STREET_SUFFIXES)
    cn_streets_pinyin = []
    for street in cn_streets:
        suffix = next(s for s, _ in CN_STREET_SUFFIXES if street.endswith(s))
        cn_streets_pinyin.append(f"{to_pinyin(street[: -len(suffix)])} {suffix_pinyin[suffix]}")
    brands = sorted({p for p in CnCompany.company_prefixes if len(p) == 2})
    characters = sorted({c for b in brands for c in b})
    more_brands = sorted({a + b for a in characters for b in characters if a != b} - set(brands))
    us_roots = sorted(set(US_CLASSIC_STREETS) | set(list(EnPerson.last_names)[:200]))
    us_streets = [f"{root} {suffix}" for root in us_roots for suffix in US_STREET_SUFFIXES]

    cn_given = list(CnPerson.first_names_male) + list(CnPerson.first_names_female)
    pinyin = {part: to_pinyin(part) for part in sorted(set(cn_given) | set(cn_family))}
    latin_given = (list(DePerson.first_names_male) + list(DePerson.first_names_female)
                   + list(EnPerson.first_names_male) + list(EnPerson.first_names_female))
    return Pools(
        de_given_m=arr(DePerson.first_names_male), de_given_f=arr(DePerson.first_names_female),
        de_family=de_family,
        en_given_m=arr(EnPerson.first_names_male), en_given_f=arr(EnPerson.first_names_female),
        en_family=en_family,
        cn_given_m=arr(CnPerson.first_names_male), cn_given_f=arr(CnPerson.first_names_female),
        cn_family=cn_family, cn_family_p=weights / weights.sum(),
        pinyin=pinyin, nicknames=_nickname_map(latin_given),
        de_streets=np.array(de_streets, dtype=object),
        cn_streets=np.array(cn_streets, dtype=object),
        cn_streets_pinyin=np.array(cn_streets_pinyin, dtype=object),
        cn_brands=np.array(brands + more_brands, dtype=object),
        cn_brands_pinyin=np.array([to_pinyin(b) for b in brands + more_brands], dtype=object),
        cn_common_brands=len(brands),
        us_streets=np.array(sorted(us_streets), dtype=object),
    )
