"""Projects and API keys, for the admin key only."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
