"""Generator settings: customer mix, portfolio shape, noise and hard-negative rates.

Defaults live in `schemas/generator.yaml` (documented there); `--config FILE` overrides any subset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from pipelines.settings import SCHEMAS_DIR

DEFAULT_CONFIG_FILE = SCHEMAS_DIR / "generator.yaml"
PROFILES_DIR = SCHEMAS_DIR / "profiles"
SECTIONS = ("mix", "population", "portfolio", "noise", "kinds", "hard_negatives", "exports")
WESTERN_COUNTRIES = ("DE", "US")


@dataclass(frozen=True)
class Mix:
    """Share of customers (true entities) per kind; sums to 1."""

    person_de: float = 0.45
    person_cn: float = 0.40
    organization: float = 0.15


@dataclass(frozen=True)
class Population:
    """What kind of people and companies there are (profiles change these; defaults: DE + CN)."""

    western_country: str = "DE"          # country of the non-Chinese persons and companies: DE or US
    national_id_share: float = 1.0       # of persons: has a national ID (CN RIC, DE IdNr, US SSN)
    mobile_share: float = 0.95           # of persons: has a mobile number
    landline_share: float = 0.5          # of persons: has a landline (organizations always have one)
    landline_if_no_mobile: bool = False  # persons without a mobile always have a landline
    light_lead_share: float = 0.0        # of sales leads: only name, e-mail and city filled in


@dataclass(frozen=True)
class Portfolio:
    """How customers spread over the four systems (drives records per customer)."""

    lead_only_share: float = 0.20
    duplicate_lead_rate: float = 0.10
    buyer_lead_share: float = 0.30
    policies_per_buyer: tuple[float, ...] = (0.82, 0.14, 0.04)
    application_share: float = 0.55
    extra_application_rate: float = 0.05
    extra_party_rate: float = 0.20
    group_insured_mean: float = 1.2
    claim_rate: float = 0.15
    english_name_share: float = 0.20
    renewal_window_days: int = 31


@dataclass(frozen=True)
class NoiseRates:
    """Share of eligible records that get each kind of noise (eligibility in generator.yaml)."""

    typo: float = 0.04
    nickname: float = 0.15
    swapped_day_month: float = 0.03
    swapped_name_order: float = 0.03
    missing_field: float = 0.08
    wrong_column: float = 0.01
    invalid_id_checksum: float = 0.02
    legal_form_variant: float = 0.30
    malformed_date: float = 0.005
    moved: float = 0.10
    surname_change: float = 0.08


@dataclass(frozen=True)
class KindRates:
    """Rates of the hard cases resolution must get right (truth `kinds`); see generator.yaml."""

    english_given_name: float = 0.12       # of Chinese-locale persons: also use an English given name
    english_given_name_use: float = 0.6    # of their records in Latin-script systems: written with it
    cantonese_romanisation: float = 0.08   # of Chinese-locale persons: romanised in Cantonese (Chan Tai Man)
    cantonese_use: float = 0.7             # of their records in Latin-script systems: written so
    party_type_wrong: float = 0.04         # of organization records in sales/servicing: keyed as a person
    full_name_in_family_field: float = 0.05  # of Chinese person records in sales/underwriting
    mobile_changed: float = 0.02           # night 2: of persons with a mobile, a new number
    new_records: float = 0.01              # night 2: new leads, as a share of customers


@dataclass(frozen=True)
class HardNegativeRates:
    """Share of entities placed in each kind of must-not-merge group."""

    household: float = 0.12
    twin: float = 0.01
    father_son: float = 0.01
    common_name: float = 0.02
    company_owner: float = 0.25
    related_company: float = 0.06   # of organizations: groups of 2-3 related companies at one address


@dataclass(frozen=True)
class Exports:
    """Optional export columns and systems, off until a mapping on main reads them."""

    underwriting_birth_name: bool = False  # a Geburtsname column `birth_name` in underwriting
    broker: bool = False                   # the fifth export, broker_claims.jsonl (issue 13)


@dataclass(frozen=True)
class GeneratorConfig:
    mix: Mix = field(default_factory=Mix)
    population: Population = field(default_factory=Population)
    portfolio: Portfolio = field(default_factory=Portfolio)
    noise: NoiseRates = field(default_factory=NoiseRates)
    kinds: KindRates = field(default_factory=KindRates)
    hard_negatives: HardNegativeRates = field(default_factory=HardNegativeRates)
    exports: Exports = field(default_factory=Exports)

    def to_dict(self) -> dict:
        return asdict(self)


def _merged(section, values: dict | None):
    if not values:
        return section
    known = {f.name for f in fields(section)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown generator setting(s) in {type(section).__name__}: {sorted(unknown)}")
    cleaned = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return replace(section, **cleaned)


def profile_names() -> list[str]:
    """Profiles shipped under schemas/profiles/ (each a folder with a generator.yaml)."""
    return sorted(p.parent.name for p in PROFILES_DIR.glob("*/generator.yaml"))


def profile_file(name: str) -> Path:
    """The generator.yaml of a shipped profile; unknown names fail with the known ones listed."""
    path = PROFILES_DIR / name / "generator.yaml"
    if not path.is_file():
        raise ValueError(f"unknown generator profile {name!r} (known: {', '.join(profile_names())})")
    return path


def load_config(path: Path | None = None, profile: str | None = None) -> GeneratorConfig:
    """Defaults from schemas/generator.yaml, then a profile's generator.yaml, then `path` on top."""
    config = GeneratorConfig()
    profile_path = profile_file(profile) if profile else None
    for source in [DEFAULT_CONFIG_FILE, profile_path, path]:
        if source is None or not Path(source).exists():
            if source is not None and source != DEFAULT_CONFIG_FILE:
                raise FileNotFoundError(source)
            continue
        data = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown generator section(s) in {source}: {sorted(unknown)}")
        config = GeneratorConfig(
            mix=_merged(config.mix, data.get("mix")),
            population=_merged(config.population, data.get("population")),
            portfolio=_merged(config.portfolio, data.get("portfolio")),
            noise=_merged(config.noise, data.get("noise")),
            kinds=_merged(config.kinds, data.get("kinds")),
            hard_negatives=_merged(config.hard_negatives, data.get("hard_negatives")),
            exports=_merged(config.exports, data.get("exports")),
        )
    if config.population.western_country not in WESTERN_COUNTRIES:
        raise ValueError(f"population.western_country must be one of {WESTERN_COUNTRIES}, "
                         f"got {config.population.western_country!r}")
    total = config.mix.person_de + config.mix.person_cn + config.mix.organization
    if abs(total - 1) > 1e-6:
        raise ValueError(f"mix shares must sum to 1, got {total}")
    return config


def expected_records_per_customer(config: GeneratorConfig) -> float:
    """Expected source records per customer under this config (sizes `--records`)."""
    p = config.portfolio
    weights = p.policies_per_buyer
    policies = sum((i + 1) * w for i, w in enumerate(weights)) / sum(weights)
    person = 1 - config.mix.organization
    extra_parties = person * p.extra_party_rate + config.mix.organization * p.group_insured_mean
    per_policy = p.application_share + 1 + extra_parties + p.claim_rate * 1.1
    lead_records = 1 + p.duplicate_lead_rate
    buyer = p.buyer_lead_share * lead_records + p.extra_application_rate + policies * per_policy
    return p.lead_only_share * lead_records + (1 - p.lead_only_share) * buyer


def records_to_customers(records: int, config: GeneratorConfig | None = None) -> int:
    """How many customers to generate so that about `records` source records result."""
    return max(1, round(records / expected_records_per_customer(config or load_config())))
