from django.apps import AppConfig


class EvapiBridgeConfig(AppConfig):
    name = "evapi_bridge"
    verbose_name = "EVAPI bridge"
