"""Create a Kamailio token and print its key (only the key, so a script can capture it)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from api.models import KamailioToken


class Command(BaseCommand):
    help = (
        "Create a token for Kamailio's requests to /api/v1/kamailio/rtjson and print its "
        "key on stdout. The key is not stored (only its SHA-256 digest): keep it now."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Which Kamailio (or cluster) will use the token.")
        parser.add_argument(
            "--network",
            action="append",
            default=[],
            metavar="CIDR",
            help="Allow the token only from this network (repeatable); "
            "without it, any address may use it.",
        )

    def handle(self, *args, name: str, network: list[str], **options) -> None:
        token = KamailioToken(name=name, allowed_networks="\n".join(network))
        key = token.set_new_key()
        try:
            token.full_clean()
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
                for field, messages in exc.message_dict.items()
            )
            raise CommandError(problems.replace("allowed_networks:", "--network:")) from None
        token.save()
        self.stdout.write(key)
