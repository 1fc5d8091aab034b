"""Inferences of the caller's project: list with filters and sorting, detail, export."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
