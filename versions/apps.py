from django.apps import AppConfig


class VersionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "versions"
    verbose_name = "Versions and publishing"
