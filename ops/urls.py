"""URLs of the operations pages: simulator, health, metrics."""

urlpatterns: list = []
