"""Analytics over a time range: overview, time series, breakdowns, top-N."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
