"""Sell decks: a deck is owned by a carrier, a routing plan or a customer (exactly one).

`tenant` is stored on the deck (the owner's tenant) so every kind of deck is scoped
by one column; existing decks take their carrier's tenant.
"""

import django.db.models.deletion
from django.db import migrations, models


def tenant_from_carrier(apps, schema_editor):
    RateDeck = apps.get_model("rating", "RateDeck")
    Carrier = apps.get_model("routing", "Carrier")
    db = schema_editor.connection.alias
    for carrier_id, tenant_id in Carrier.objects.using(db).values_list("pk", "tenant_id"):
        RateDeck.objects.using(db).filter(carrier_id=carrier_id).update(tenant_id=tenant_id)


class Migration(migrations.Migration):
    dependencies = [
        ("rating", "0001_initial"),
        ("routing", "0007_customers_and_plans"),
        ("tenants", "0002_user_and_group_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="ratedeck",
            name="tenant",
            field=models.ForeignKey(
                help_text="The owner's tenant (set from the owner).",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="rate_decks",
                to="tenants.tenant",
            ),
        ),
        migrations.RunPython(tenant_from_carrier, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="ratedeck",
            name="tenant",
            field=models.ForeignKey(
                help_text="The owner's tenant (set from the owner).",
                on_delete=django.db.models.deletion.PROTECT,
                related_name="rate_decks",
                to="tenants.tenant",
            ),
        ),
        migrations.AddField(
            model_name="historicalratedeck",
            name="tenant",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                help_text="The owner's tenant (set from the owner).",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="tenants.tenant",
            ),
        ),
        migrations.AlterField(
            model_name="ratedeck",
            name="carrier",
            field=models.ForeignKey(
                blank=True,
                help_text="A vendor deck: what this carrier charges.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="rate_decks",
                to="routing.carrier",
            ),
        ),
        migrations.AlterField(
            model_name="historicalratedeck",
            name="carrier",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                help_text="A vendor deck: what this carrier charges.",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="routing.carrier",
            ),
        ),
        migrations.AddField(
            model_name="ratedeck",
            name="plan",
            field=models.ForeignKey(
                blank=True,
                help_text="A sell deck: what the customers on this plan pay (unless they have "
                "their own).",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="sell_decks",
                to="routing.routingplan",
            ),
        ),
        migrations.AddField(
            model_name="historicalratedeck",
            name="plan",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                help_text="A sell deck: what the customers on this plan pay (unless they have "
                "their own).",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="routing.routingplan",
            ),
        ),
        migrations.AddField(
            model_name="ratedeck",
            name="customer",
            field=models.ForeignKey(
                blank=True,
                help_text="A sell deck: what this customer pays, instead of its plan's deck.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="sell_decks",
                to="routing.customer",
            ),
        ),
        migrations.AddField(
            model_name="historicalratedeck",
            name="customer",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                help_text="A sell deck: what this customer pays, instead of its plan's deck.",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="routing.customer",
            ),
        ),
        migrations.AlterField(
            model_name="ratedeck",
            name="effective_from",
            field=models.DateTimeField(
                help_text="The deck is in force from this moment until its owner's next deck."
            ),
        ),
        migrations.AlterField(
            model_name="historicalratedeck",
            name="effective_from",
            field=models.DateTimeField(
                help_text="The deck is in force from this moment until its owner's next deck."
            ),
        ),
        migrations.AlterModelOptions(
            name="ratedeck",
            options={"ordering": ["carrier", "plan", "customer", "-effective_from"]},
        ),
        migrations.AddConstraint(
            model_name="ratedeck",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("carrier__isnull", False), ("customer__isnull", True), ("plan__isnull", True)),
                    models.Q(("carrier__isnull", True), ("customer__isnull", True), ("plan__isnull", False)),
                    models.Q(("carrier__isnull", True), ("customer__isnull", False), ("plan__isnull", True)),
                    _connector="OR",
                ),
                name="ratedeck_one_owner",
                violation_error_message="A rate deck belongs to exactly one carrier, routing plan "
                "or customer.",
            ),
        ),
        migrations.AddConstraint(
            model_name="ratedeck",
            constraint=models.UniqueConstraint(
                fields=("plan", "effective_from"),
                name="ratedeck_one_per_plan_and_time",
                violation_error_message="This plan already has a deck effective at that time.",
            ),
        ),
        migrations.AddConstraint(
            model_name="ratedeck",
            constraint=models.UniqueConstraint(
                fields=("customer", "effective_from"),
                name="ratedeck_one_per_customer_and_time",
                violation_error_message="This customer already has a deck effective at that time.",
            ),
        ),
    ]
