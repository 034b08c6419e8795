import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0003_dedup_and_dispatch"),
        ("voices", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="voice",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="jobs", to="voices.voiceprompt"
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="result_info",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
