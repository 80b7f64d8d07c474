"""The candles and positions of the trades already stored (a database that traded before the
aggregates existed): recomputed from them, as `manage.py analytics_check --rebuild` does. Run
with the matching worker stopped (`manage.py runexchange` migrates before starting it)."""

from django.db import migrations


def backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    from marketdata import recompute
    from orders.instruments import read_sync

    Trade = apps.get_model("orders", "Trade")
    for instrument in read_sync():
        if Trade.objects.filter(instrument_id=instrument.id).exists():
            recompute.rebuild(instrument)


class Migration(migrations.Migration):

    dependencies = [
        ('marketdata', '0003_candles'),
        ('orders', '0006_positions_and_settlements'),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
