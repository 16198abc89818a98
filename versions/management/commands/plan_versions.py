"""manage.py plan_versions: list, diff, publish, roll back and test a staged plan's versions."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from routing.models import RoutingPlan
from tenants.models import Tenant
from tenants.scoping import can_access
from versions import pins, route_tests
from versions.models import PlanVersion, RouteTest
from versions.publishing import (
    DRAFT,
    PublishRefused,
    RouteTestsFailed,
    check_kept,
    describe_targets,
    diff,
    discard_draft,
    label,
    publish,
    rollback,
    trunk_names,
)

MAX_VERSION = 2**31 - 1
_MARKS = {"added": "+", "removed": "-", "changed": "~"}


def find_plan(tenant: str, plan: str) -> RoutingPlan:
    """The tenant's plan by name, or CommandError naming what there is."""
    found = Tenant.objects.filter(slug=tenant).first()
    if found is None:
        raise CommandError(f"No tenant has the slug {tenant!r}.")
    plans = RoutingPlan.objects.filter(tenant=found)
    row = plans.filter(name=plan).first()
    if row is None:
        names = ", ".join(plans.values_list("name", flat=True)) or "none"
        raise CommandError(f"Tenant {tenant} has no routing plan named {plan!r} (plans: {names}).")
    return row


def view_of(text: str, plan: RoutingPlan, *, option: str) -> int | None:
    """ "draft", "live" or a version number, as None (the draft) or the number."""
    given = text.strip().lower()
    if given == "draft":
        return DRAFT
    if given == "live":
        if plan.published_version is None:
            raise CommandError(
                f"Plan {plan} is not staged: it has no live version yet (its saved routes are "
                "live as they are; its first publish stages it)."
            )
        return plan.published_version
    if given.isascii() and given.isdigit() and 0 < int(given) <= MAX_VERSION:
        return int(given)
    raise CommandError(f"{option} is 'draft', 'live' or a version number, not {text!r}.")


def when(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


class Command(BaseCommand):
    help = (
        "Work with a staged routing plan's versions: list them, show how two views differ "
        "(draft, live or a version number), publish the draft (after its route tests), roll "
        "back to a kept version, or run the plan's route tests."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def action(name: str, help_text: str):
            sub = actions.add_parser(name, help=help_text)
            sub.add_argument("--tenant", required=True, help="Tenant slug.")
            sub.add_argument("--plan", required=True, help="Routing plan name.")
            return sub

        action("list", "The plan's kept versions, newest first.")
        sub = action("diff", "The routes that differ between two views of the plan.")
        sub.add_argument("--from", dest="old", default="live", help="draft, live (default) or N.")
        sub.add_argument("--to", dest="new", default="draft", help="draft (default), live or N.")
        sub.add_argument("--limit", type=int, default=100, help="Rows shown at most (100).")
        sub = action("publish", "Publish the draft as the plan's next version.")
        sub.add_argument("--comment", default="", help="Why (kept with the version).")
        sub.add_argument("--user", default=None, help="Username the publish is recorded as.")
        sub.add_argument(
            "--expected", type=int, default=None, help="Refuse if the plan is not at this version."
        )
        sub.add_argument(
            "--force",
            action="store_true",
            help="Publish although route tests fail (the --user must have the permission).",
        )
        sub = action("rollback", "Publish a kept version's routes again as the next version.")
        sub.add_argument("--to", dest="to", type=int, required=True, help="The kept version.")
        sub.add_argument("--comment", default="", help="Why.")
        sub.add_argument("--user", default=None, help="Username the rollback is recorded as.")
        sub.add_argument(
            "--expected", type=int, default=None, help="Refuse if the plan is not at this version."
        )
        action("discard", "Discard the draft: its routes become the live version's again.")
        sub = action("test", "Run the plan's route tests.")
        sub.add_argument("--against", default="draft", help="draft (default), live or N.")

    def handle(self, *args, **options):
        plan = find_plan(options["tenant"], options["plan"])
        try:
            getattr(self, f"do_{options['action']}")(plan, options)
        except PublishRefused as exc:
            raise CommandError(str(exc)) from None

    def user(self, username: str | None, plan: RoutingPlan):
        if username is None:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user is named {username!r}.")
        if not can_access(user, plan):
            raise CommandError(f"User {username} does not operate tenant {plan.tenant.slug}.")
        return user

    def title(self, plan: RoutingPlan) -> str:
        return f"{plan.tenant.slug} / {plan.name}"

    def do_list(self, plan: RoutingPlan, options) -> None:
        live = plan.published_version
        state = f"live version {live}" if live is not None else "not staged (routes live as saved)"
        self.stdout.write(f"{self.title(plan)}: {state}")
        for version in PlanVersion.objects.filter(plan=plan).order_by("-number"):
            kind = f"rollback to {version.source}" if version.source else version.kind
            line = (
                f"  {'*' if version.number == live else ' '} v{version.number}  {kind}  "
                f"{when(version.published_at)}  by {version.published_by_name or 'system'}  "
                f"{version.routes} routes (+{version.added} -{version.removed} ~{version.changed})"
            )
            if version.forced:
                line += "  FORCED past failing tests"
            if version.comment:
                line += f"  {version.comment!r}"
            self.stdout.write(line)

    def do_diff(self, plan: RoutingPlan, options) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit is 1 or more.")
        old = view_of(options["old"], plan, option="--from")
        new = view_of(options["new"], plan, option="--to")
        found = diff(plan, old, new, limit=options["limit"])
        self.stdout.write(
            f"{self.title(plan)}: {label(old)} → {label(new)}: {found.added} added, "
            f"{found.removed} removed, {found.changed} changed"
        )
        names = trunk_names(plan.tenant_id)
        for row in found.rows:
            route = row.route
            rule = route.value("caller_prefix") or route.value("caller_pattern") or ""
            key = f"{row.prefix} (caller {rule})" if rule else row.prefix
            if row.change == "changed":
                what = ", ".join(row.changed_columns())
                detail = f"{what}: {describe_targets(row.old, names)} ⇒ "
                detail += describe_targets(row.new, names)
            else:
                detail = describe_targets(row.route, names)
            self.stdout.write(f"  {_MARKS[row.change]} {key}  {detail}")
        if found.truncated:
            self.stdout.write(f"  … and {found.total - len(found.rows)} more (raise --limit)")

    def do_publish(self, plan: RoutingPlan, options) -> None:
        user = self.user(options["user"], plan)
        try:
            done = publish(
                plan,
                user=user,
                comment=options["comment"],
                expected=options["expected"],
                force=options["force"],
            )
        except RouteTestsFailed as exc:
            self.write_results(exc.results)
            raise CommandError(str(exc)) from None
        self.write_results(done.test_results)
        version = done.version
        forced = " (forced past failing route tests)" if version.forced else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"{self.title(plan)}: published version {version.number}{forced}: "
                f"{version.added} added, {version.removed} removed, {version.changed} changed."
            )
        )

    def do_discard(self, plan: RoutingPlan, options) -> None:
        done = discard_draft(plan)
        for line in done.skipped:
            self.stderr.write(f"not restored: {line}")
        found = done.diff
        self.stdout.write(
            self.style.SUCCESS(
                f"{self.title(plan)}: discarded the draft ({found.added} added, "
                f"{found.removed} removed, {found.changed} changed): its routes are version "
                f"{plan.published_version}'s again."
            )
        )

    def do_rollback(self, plan: RoutingPlan, options) -> None:
        user = self.user(options["user"], plan)
        done = rollback(
            plan,
            options["to"],
            user=user,
            comment=options["comment"],
            expected=options["expected"],
        )
        version = done.version
        self.stdout.write(
            self.style.SUCCESS(
                f"{self.title(plan)}: version {version.number} has the routes of version "
                f"{options['to']}: {version.added} added, {version.removed} removed, "
                f"{version.changed} changed."
            )
        )

    def do_test(self, plan: RoutingPlan, options) -> None:
        against = options["against"].strip().lower()
        if against == "live":
            pin, read = None, "as calls get it"
        else:
            version = view_of(against, plan, option="--against")
            if version is DRAFT:
                pin, read = pins.draft(plan.pk), "the draft"
            else:
                check_kept(plan, version)
                pin, read = pins.version(plan.pk, version), f"version {version}"
        tests = RouteTest.objects.filter(plan=plan).select_related("tenant", "customer", "plan")
        results = route_tests.run(list(tests), pin=pin)
        route_tests.record(results)
        self.stdout.write(f"{self.title(plan)}: {len(results)} route tests against {read}")
        self.write_results(results)
        failed = [result for result in results if not result.passed]
        if failed:
            raise CommandError(f"{len(failed)} of {len(results)} route tests failed.")

    def write_results(self, results) -> None:
        for result in results:
            if result.passed:
                self.stdout.write(f"  PASS {result.test.name}")
            else:
                self.stdout.write(f"  FAIL {result.test.name}: {result.message}")
