"""Routes: ml_backend (being written)."""

from fastapi import APIRouter

router = APIRouter()
