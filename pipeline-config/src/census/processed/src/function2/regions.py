"""US Census Bureau regions and divisions by state FIPS code (50 states and DC)."""

_DIVISIONS = {
    ("Northeast", "New England"): "09 23 25 33 44 50",
    ("Northeast", "Middle Atlantic"): "34 36 42",
    ("Midwest", "East North Central"): "17 18 26 39 55",
    ("Midwest", "West North Central"): "19 20 27 29 31 38 46",
    ("South", "South Atlantic"): "10 11 12 13 24 37 45 51 54",
    ("South", "East South Central"): "01 21 28 47",
    ("South", "West South Central"): "05 22 40 48",
    ("West", "Mountain"): "04 08 16 30 32 35 49 56",
    ("West", "Pacific"): "02 06 15 41 53",
}

REGION_OF: dict[str, tuple[str, str]] = {
    fips: region_division for region_division, codes in _DIVISIONS.items() for fips in codes.split()
}
