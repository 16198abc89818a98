from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "API and Kamailio access"
    default_auto_field = "django.db.models.BigAutoField"
