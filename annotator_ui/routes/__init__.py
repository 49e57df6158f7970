"""One APIRouter per module; annotator_ui.app.ROUTERS lists them."""
