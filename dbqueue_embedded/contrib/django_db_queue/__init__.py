"""django-db-queue's command names, for teams moving from it.

Add ``"dbqueue_embedded.contrib.django_db_queue"`` to INSTALLED_APPS to get
``worker``, ``queue_depth``, ``delete_old_jobs`` and ``create_job``. Named
jobs themselves (``settings.JOBS``) need only ``dbqueue_embedded``: see
``dbqueue_embedded.named_jobs``.
"""
