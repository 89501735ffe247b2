"""The engine's small vocabulary: colours, code kinds, cities and subject pseudonyms."""

from __future__ import annotations

__all__ = [
    "CHINA",
    "CITIES",
    "RECORDS_SCOPES",
    "SCOPES",
    "CityCode",
    "CodeKind",
    "Colour",
    "SubjectId",
    "china_date",
    "city_name",
]

import functools
from datetime import date, datetime, timedelta, timezone
from enum import IntEnum
from typing import NewType

CHINA = timezone(timedelta(hours=8), "China Standard Time")
"""China has one time zone and no daylight saving time."""


def china_date(now: float) -> date:
    """The date in China at ``now`` (Unix seconds): birth dates in identifiers are China dates."""
    return datetime.fromtimestamp(now, CHINA).date()


SubjectId = NewType("SubjectId", str)
"""A subject's pseudonym: 16 URL-safe base64 characters (12 bytes of HMAC), never a raw ID."""

CityCode = NewType("CityCode", int)
"""A prefecture-level city by its six-digit administrative code, e.g. 320100 for Nanjing."""


class Colour(IntEnum):
    """Health status colour. The integer is the value carried in a code; never renumber."""

    GREY = 0
    """No status the engine can vouch for."""
    GREEN = 1
    YELLOW = 2
    RED = 3

    @functools.cached_property
    def label(self) -> str:
        """The lower-case name used in JSON (worked out once: hot paths read it)."""
        return self.name.lower()


class CodeKind(IntEnum):
    """What a code stands for. The integer is the value carried in a code; never renumber."""

    HEALTH = 1
    PERSON_SERVICE = 2
    ENTERPRISE_SERVICE = 3
    FUSED = 4
    """A person's health colour and service-code identity in one code (卡码融合)."""

    @functools.cached_property
    def label(self) -> str:
        """The lower-case name used in JSON (worked out once: hot paths read it)."""
        return self.name.lower()


RECORDS_SCOPES = ("records:venue", "records:subject", "records:counts", "records:contacts")
"""The records service's questions, one scope each: a venue's visitors, a subject's trajectory,
aggregate counts, and contacts (other people's scans found through one person's)."""
SCOPES = ("generate", "display", "convert", "admin", "verify", "appeal", "fusion", *RECORDS_SCOPES)
"""What an API client may be allowed to do; each route needs one."""

CITIES: dict[CityCode, str] = {
    CityCode(320100): "Nanjing",
    CityCode(320200): "Wuxi",
    CityCode(320300): "Xuzhou",
    CityCode(320400): "Changzhou",
    CityCode(320500): "Suzhou",
    CityCode(320600): "Nantong",
    CityCode(320700): "Lianyungang",
    CityCode(320800): "Huai'an",
    CityCode(320900): "Yancheng",
    CityCode(321000): "Yangzhou",
    CityCode(321100): "Zhenjiang",
    CityCode(321200): "Taizhou",
    CityCode(321300): "Suqian",
}


def city_name(code: int) -> str:
    """The English name of a city code; raises KeyError for a code outside the province."""
    return CITIES[CityCode(code)]
