"""Builds `person_names.txt`, the gazetteer of the PERSON detector (run by hand, not at import).

Source: the per-locale person, lorem, address and date providers of Faker
(https://github.com/joke2k/faker, MIT licence, Copyright (c) 2012 Daniele Faraglia), version
pinned below. Faker is needed only to rebuild the file: `pip install 'faker==40.63.0'` then
`python inferline/processors/data/build_names.py`. The output is committed (~150 KB).

Sections of the output:

* `given`: given names of the locales below, as written (capitalised, accents kept).
* `family`: family names; multi-word ones ("van Noort", "De Boeck") are kept whole and their last
  word is added on its own.
* `common`: capitalised common words, cities, countries, months and weekdays of the same locales. A given or
  family name that is also one of these ("Mark", "Paris", "Rosa", "Weber"? no: only common words)
  is ambiguous: masked only with context (a title, a greeting, a second name), never alone.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import faker

FAKER_VERSION = "40.63.0"
LOCALES = (
    "en_US", "en_GB", "en_IE", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_BE", "fr_CH", "es_ES", "it_IT",
    "nl_NL", "nl_BE", "pt_PT", "pl_PL", "sv_SE", "da_DK",
)  # fmt: skip
LOREM_LOCALES = ("en_US", "de_DE", "fr_FR", "it_IT", "nl_NL")  # es_ES and pl_PL lists are full of names
CITY_LOCALES = ("de_DE", "nl_NL", "pt_PT", "pl_PL")


def _provider(kind: str, locale: str) -> type | None:
    try:
        provider: type = importlib.import_module(f"faker.providers.{kind}.{locale}").Provider
        return provider
    except ModuleNotFoundError:
        return None


def _words(values: object) -> list[str]:
    if isinstance(values, dict):
        values = list(values)
    if not isinstance(values, list | tuple):
        return []
    return [v for v in values if isinstance(v, str)]


def _clean(name: str) -> str | None:
    name = name.strip()
    # Faker's de_DE list has generated suffixes ("Koch II"); keep real-looking names only.
    if (
        len(name) < 2
        or not name[0].isupper()
        or any(c.isdigit() for c in name)
        or name.endswith((" I", " II"))
    ):
        return None
    return name


def main() -> None:
    if faker.VERSION != FAKER_VERSION:
        print(f"warning: built with faker {faker.VERSION}, pinned {FAKER_VERSION}")
    given: set[str] = set()
    family: set[str] = set()
    for loc in LOCALES:
        p = _provider("person", loc)
        if p is None:
            continue
        for attr in ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"):
            given.update(n for n in map(_clean, _words(getattr(p, attr, ()))) if n)
        for attr in ("last_names", "last_names_male", "last_names_female"):
            for n in map(_clean, _words(getattr(p, attr, ()))):
                if n:
                    family.add(n)
                    if " " in n:
                        family.add(n.rsplit(" ", 1)[1])
    common: set[str] = set()
    for loc in LOREM_LOCALES:
        p = _provider("lorem", loc)
        for w in _words(getattr(p, "word_list", ())):
            if w.isalpha() and len(w) > 1:
                common.add(w[0].upper() + w[1:])
    for loc in CITY_LOCALES:
        p = _provider("address", loc)
        common.update(c for c in _words(getattr(p, "cities", ())) if " " not in c)
    for loc in ("en_US", *LOREM_LOCALES, "es_ES", "pt_PT"):
        p = _provider("address", loc)  # country names ("France", "Georgia", "Jordan")
        common.update(c for c in _words(getattr(p, "countries", ())) if " " not in c)
    for loc in LOCALES:
        p = _provider("date_time", loc)
        for attr in ("DAY_NAMES", "MONTH_NAMES"):
            common.update(w.capitalize() for w in _words(list(getattr(p, attr, {}).values())))
    out = Path(__file__).with_name("person_names.txt")
    lines = [
        f"# Built by build_names.py from Faker {faker.VERSION} (MIT licence, (c) 2012 Daniele Faraglia).",
        f"# Locales: {', '.join(LOCALES)}.",
        "[given]",
        *sorted(given),
        "[family]",
        *sorted(family),
        "[common]",
        *sorted(common),
    ]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out}: {len(given)} given, {len(family)} family, {len(common)} common")


if __name__ == "__main__":
    main()
