"""Routes: metrics (being written)."""

from fastapi import APIRouter

router = APIRouter()
