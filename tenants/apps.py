from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from tenants.roles import refresh_operator_group

        # Permissions of new models exist only after migrate: bring the group up to date.
        post_migrate.connect(refresh_operator_group, dispatch_uid="tenants.operator_group")
