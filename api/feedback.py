"""Feedback on one inference: write (through the pipeline's writer) and read with a summary."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
