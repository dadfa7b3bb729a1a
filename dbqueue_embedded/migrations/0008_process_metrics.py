from django.db import migrations, models
from django.db.models import Value


class Migration(migrations.Migration):

    dependencies = [
        ('dbqueue_embedded', '0007_job_progress'),
    ]

    operations = [
        # With a database default: processes of the previous release register
        # without naming it during a rolling deploy.
        migrations.AddField(
            model_name='workerprocess',
            name='metrics',
            field=models.JSONField(db_default=Value({}, models.JSONField()), default=dict),
        ),
    ]
